// One ModelStreamInfer call (Triton's streaming extension) on gRPC's
// callback API. Requests are read one after another and each starts at once
// through the request pipeline, so several are in flight (up to
// kMaxInFlight requests and kMaxBytesHeld bytes of requests and unwritten
// responses: then reading pauses, and gRPC's flow control holds the client
// back, so a client that never reads its responses holds a bounded amount
// of memory); responses are written in the order they complete, one write
// at a time, each with its request's id. A failed request is answered in
// error_message ("CODE: message"), as Triton does, and the stream goes on.
// The call ends OK once the client has half-closed and everything read has
// been written; UNAVAILABLE when the server drains; CANCELLED when a write
// fails (the client is gone).
#ifndef HGPIPE_SERVER_STREAM_REACTOR_H_
#define HGPIPE_SERVER_STREAM_REACTOR_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/infer_pipeline.h"

namespace hgpipe::server {

class StreamReactor;

// The open streams of a service, told when the server drains.
// Thread-safe.
class OpenStreams {
 public:
  // Registers `stream`. Returns whether `pipeline` already drains, read
  // under the lock DrainAll takes: a stream either is told by DrainAll or
  // sees the draining here.
  bool Add(StreamReactor* stream, const InferPipeline& pipeline);
  void Remove(StreamReactor* stream);
  // Drains every open stream. Call after the pipeline has started draining.
  void DrainAll();

 private:
  hgpipe::Mutex mu_;
  absl::flat_hash_set<StreamReactor*> streams_ ABSL_GUARDED_BY(mu_);
};

class StreamReactor final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                           inference::ModelStreamInferResponse> {
 public:
  static constexpr int kMaxInFlight = 256;
  static constexpr size_t kMaxBytesHeld = size_t{64} << 20;

  // Registers with `streams` and starts reading, or ends the call at once
  // if `pipeline` drains. Both must outlive the stream, which deletes itself
  // when gRPC is done with it. `deadline`: the call's, bounding every
  // request's own timeout.
  StreamReactor(InferPipeline* pipeline, OpenStreams* streams, absl::Time deadline);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

  // The server drains: read no more; finish once what was read is written.
  // Called by OpenStreams::DrainAll with its lock held, which keeps the
  // stream alive (OnDone takes it); Finish never runs OnDone inline.
  void Drain();

 private:
  struct Item {
    inference::ModelInferRequest request;
    inference::ModelStreamInferResponse response;
    // What it holds, counted in bytes_held_: the request until answered,
    // then the response.
    size_t bytes = 0;
  };
  // gRPC calls to make after releasing mu_, in this order.
  struct Actions {
    std::vector<Item*> remove;
    Item* write = nullptr;
    inference::ModelInferRequest* read = nullptr;
    std::optional<grpc::Status> finish;
  };

  void OnInferDone(Item* item, absl::Status s);
  // Ends a hold on in_flight_ (one taken so that the stream cannot finish
  // while this thread still has reactions to start), then acts on it.
  void ReleaseHold();
  // Whether to read the next request, and whether the call can end.
  void DecideLocked(Actions* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finish last: OnDone (on another thread) may delete the stream after it.
  void Act(Actions a);

  InferPipeline* const pipeline_;
  OpenStreams* const streams_;
  const absl::Time deadline_;
  hgpipe::Mutex mu_;
  // The request the outstanding read fills; null while none is (paused,
  // or reads are over).
  std::unique_ptr<Item> reading_into_ ABSL_GUARDED_BY(mu_);
  // Requests read and not yet written or dropped (+1 during OnReadDone).
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Bytes of the requests and responses of those (Item::bytes).
  size_t bytes_held_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Item*> to_write_ ABSL_GUARDED_BY(mu_);  // front: being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_STREAM_REACTOR_H_
