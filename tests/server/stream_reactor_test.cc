// StreamReactor's bookkeeping, driven by hand: a reactor that gRPC has not
// bound keeps its StartRead / StartWrite / Finish in gRPC's backlog, so the
// test plays gRPC's part by calling the reactions itself.
#include "server/stream_reactor.h"

#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

// Holds every request until the test answers it.
class HeldPipeline final : public InferPipeline {
 public:
  void Infer(const inference::ModelInferRequest&, inference::ModelInferResponse*, absl::Time,
             const InferOrigin&, Done done) override {
    held_.push_back(std::move(done));
  }
  bool Ready() const override { return true; }
  bool Serving() const override { return true; }
  bool Draining() const override { return false; }

  size_t held() const { return held_.size(); }
  void AnswerAll() {
    std::vector<Done> held = std::move(held_);
    held_.clear();
    for (Done& d : held) d(absl::OkStatus());
  }

 private:
  std::vector<Done> held_;
};

// The outage the chaos probe found: the stream finished (draining, or its
// client gone) while a read was under way, and gRPC then completed that
// read with a request. Started, that request would have been answered into
// a stream OnDone had already deleted.
TEST(StreamReactorTest, ARequestReadAfterFinishIsNotStarted) {
  HeldPipeline pipeline;
  OpenStreams streams;
  auto* stream = new StreamReactor(&pipeline, &streams, absl::InfiniteFuture());
  stream->OnReadDone(true);  // request 1, in the pipeline; the next read is under way
  ASSERT_EQ(pipeline.held(), 1u);
  streams.DrainAll();  // reads no more, but request 1 is still to be written
  pipeline.AnswerAll();
  stream->OnWriteDone(true);  // request 1 written: the stream finishes
  stream->OnReadDone(true);   // the read under way completes anyway
  // (Else answering it would use the deleted stream: the test stops here.)
  ASSERT_EQ(pipeline.held(), 0u) << "a request was started after Finish";
  stream->OnDone();  // gRPC's last call: nothing of the stream may be used after it
}

// Without Finish, a completed read is a request like any other, and the
// answers' writes (through the hold OnInferDone takes) end the stream.
TEST(StreamReactorTest, RequestsReadBeforeFinishAreAnswered) {
  HeldPipeline pipeline;
  OpenStreams streams;
  auto* stream = new StreamReactor(&pipeline, &streams, absl::InfiniteFuture());
  stream->OnReadDone(true);
  stream->OnReadDone(true);
  EXPECT_EQ(pipeline.held(), 2u);
  pipeline.AnswerAll();
  stream->OnWriteDone(true);
  stream->OnWriteDone(true);
  stream->OnReadDone(false);  // the client half-closes: the stream finishes
  stream->OnDone();
}

}  // namespace
}  // namespace hgpipe::server
