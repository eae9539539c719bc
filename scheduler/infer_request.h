// A request as the scheduler sees it: n images for one model, and three
// steps it calls back. Fill puts an image into a board's input slot when a
// run is formed (the fill step: a copy of device patches, or preprocessing
// an encoded image straight into the slot); Output hands over an image's
// result words when its run completes; Done answers the request.
//
// The device's encoding belongs to the board (accel/device_layout.h): Fill
// writes the device's input order, Output receives the device's output
// words, and both decode or encode through accel/.
#ifndef HGPIPE_SCHEDULER_INFER_REQUEST_H_
#define HGPIPE_SCHEDULER_INFER_REQUEST_H_

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "accel/bitstream.h"

namespace hgpipe::scheduler {

class InferRequest {
 public:
  virtual ~InferRequest() = default;

  // Writes image `index` into `slot`, which holds g.input_bytes() in the
  // device's input order (accel/device_layout.h). Called with no scheduler
  // lock held, once per image and run (again if its run was abandoned by a
  // failed board and the image goes into another), never after Done, and
  // possibly concurrently for different images. An error fails the request
  // with that status: it is answered once no run reads it, and the results
  // of its images already on a board are dropped. Must not block.
  virtual absl::Status Fill(uint32_t index, const accel::DeviceGeometry& g,
                            absl::Span<int8_t> slot) = 0;
  // Image `index`'s result: g.output_words() device words, valid only during
  // the call. Called with no scheduler lock held, on the thread that
  // answers, once per image, before Done(OK) and never after Done.
  virtual void Output(uint32_t index, const accel::DeviceGeometry& g,
                      absl::Span<const uint32_t> words) = 0;
  // Called exactly once with OK or the reason the request failed, with no
  // scheduler lock held, on a scheduler or board thread. Must not block.
  virtual void Done(absl::Status status) = 0;

  uint32_t n_images = 0;
  // 1 (highest) .. the model's priority_levels; 0 means the model's default.
  uint32_t priority = 0;
  // Answered DEADLINE_EXCEEDED, without reaching a board, if it cannot
  // complete by then; answered DEADLINE_EXCEEDED at this time at the latest
  // (Done is then called while a board may still compute its images; Fill
  // and Output are not called after it).
  absl::Time deadline = absl::InfiniteFuture();
  // Fill is expensive (decoding an image): never run on the caller of
  // Enqueue (a gRPC thread), always on the scheduler's fill executor.
  bool heavy_fill = false;
};

// A request whose images and logits are plain buffers: n flat
// [tokens][token_values] int8 images in, n x classes int32 logits out. For
// tests, the simulation and applications that hold their data in memory.
// The buffers are the caller's and must stay valid until `done` is called.
class BufferRequest final : public InferRequest {
 public:
  absl::Status Fill(uint32_t index, const accel::DeviceGeometry& g,
                    absl::Span<int8_t> slot) override;
  void Output(uint32_t index, const accel::DeviceGeometry& g,
              absl::Span<const uint32_t> words) override;
  void Done(absl::Status status) override;

  const int8_t* images = nullptr;
  int32_t* logits = nullptr;
  absl::AnyInvocable<void(absl::Status)> done;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_INFER_REQUEST_H_
