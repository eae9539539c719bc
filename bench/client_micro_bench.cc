// Micro-benchmarks of the client-side work per request (Google Benchmark):
// what a typed client pays that hgpipe-perf avoids by reusing serialized
// requests, and what checking a `verify` response costs.
//
//   build/bin/hgpipe-client-micro-bench [--benchmark_filter=...]
#include <cstring>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "base/mutex.h"
#include "benchmark/benchmark.h"
#include "clients/tensors.h"

namespace hgpipe::clients {
namespace {

void BM_MakeImageRequest(benchmark::State& state) {
  const int n = state.range(0);
  const auto images = GenerateRandomImages(n, 1);
  for (auto _ : state) {
    auto r = MakeImageRequest("verify", images);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_MakeImageRequest)->Arg(1)->Arg(8);

// What gRPC's protobuf serializer does per send with a typed stub.
void BM_SerializeRequestToByteBuffer(benchmark::State& state) {
  const int n = state.range(0);
  const auto request = *MakeImageRequest("verify", GenerateRandomImages(n, 1));
  for (auto _ : state) {
    grpc::ByteBuffer buffer;
    bool own = false;
    auto s =
        grpc::SerializationTraits<inference::ModelInferRequest>::Serialize(request, &buffer, &own);
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SerializeRequestToByteBuffer)->Arg(1)->Arg(8);

// What hgpipe-perf does instead: share a serialized buffer (slice refs).
void BM_CopySerializedByteBuffer(benchmark::State& state) {
  const auto request = *MakeImageRequest("verify", GenerateRandomImages(1, 1));
  grpc::ByteBuffer buffer;
  bool own = false;
  (void)grpc::SerializationTraits<inference::ModelInferRequest>::Serialize(request, &buffer, &own);
  for (auto _ : state) {
    grpc::ByteBuffer copy(buffer);
    benchmark::DoNotOptimize(copy);
  }
}
BENCHMARK(BM_CopySerializedByteBuffer);

inference::ModelInferResponse VerifyResponse(const std::vector<int8_t>& images, int n) {
  inference::ModelInferResponse r;
  auto* o = r.add_outputs();
  o->set_name("OUTPUT");
  o->set_datatype("INT32");
  o->add_shape(n);
  o->add_shape(kClasses);
  std::string raw;
  for (int i = 0; i < n; ++i) {
    const auto row =
        ExpectedVerifyLogits(absl::MakeConstSpan(images).subspan(i * kImageBytes, kImageBytes));
    raw.append(reinterpret_cast<const char*>(row.data()), row.size() * 4);
  }
  r.add_raw_output_contents(raw);
  return r;
}

void BM_ParseAndReadResponse(benchmark::State& state) {
  const int n = state.range(0);
  const auto images = GenerateRandomImages(n, 1);
  const std::string wire = VerifyResponse(images, n).SerializeAsString();
  for (auto _ : state) {
    inference::ModelInferResponse r;
    r.ParseFromString(wire);
    auto out = ReadInt32Output(r, "OUTPUT");
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_ParseAndReadResponse)->Arg(1)->Arg(8);

// The digest of one image from scratch (hgpipe-client's check; hgpipe-perf
// computes it once per pool image before the run).
void BM_ExpectedVerifyLogits(benchmark::State& state) {
  const auto image = GenerateRandomImages(1, 1);
  for (auto _ : state) {
    auto row = ExpectedVerifyLogits(image);
    benchmark::DoNotOptimize(row);
  }
  state.SetBytesProcessed(state.iterations() * kImageBytes);
}
BENCHMARK(BM_ExpectedVerifyLogits);

// hgpipe::Mutex (absl::Mutex) lock/unlock, as every completion takes one.
// Debian builds Abseil without NDEBUG, so deadlock detection is on unless a
// binary turns it off; the argument selects the mode.
void BM_MutexLockUnlock(benchmark::State& state) {
  absl::SetMutexDeadlockDetectionMode(state.range(0) ? absl::OnDeadlockCycle::kAbort
                                                     : absl::OnDeadlockCycle::kIgnore);
  hgpipe::Mutex mu;
  for (auto _ : state) {
    hgpipe::MutexLock l(&mu);
  }
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
}
BENCHMARK(BM_MutexLockUnlock)->ArgName("deadlock_detection")->Arg(0)->Arg(1);

}  // namespace
}  // namespace hgpipe::clients

BENCHMARK_MAIN();
