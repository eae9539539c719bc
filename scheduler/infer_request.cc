#include "scheduler/infer_request.h"

#include <utility>

#include "accel/device_layout.h"

namespace hgpipe::scheduler {

absl::Status BufferRequest::Fill(uint32_t index, const accel::DeviceGeometry& g,
                                 absl::Span<int8_t> slot) {
  accel::PackImage(g, images + size_t{index} * g.input_bytes(), slot.data());
  return absl::OkStatus();
}

void BufferRequest::Output(uint32_t index, const accel::DeviceGeometry& g,
                           absl::Span<const uint32_t> words) {
  accel::DecodeLogits(words.first(g.classes), logits + size_t{index} * g.classes);
}

void BufferRequest::Done(absl::Status status) {
  if (done) done(std::move(status));
}

}  // namespace hgpipe::scheduler
