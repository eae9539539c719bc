#include "server/request_pipeline.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "accel/verify_digest.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "preprocess/image_encoder.h"
#include "prometheus/text_serializer.h"
#include "server/board_factory.h"

namespace hgpipe::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr size_t kVerifyImageBytes = 196 * 768;
constexpr uint32_t kVerifyClasses = 1000;

// The sample `name{labels}` of the metrics, or 0 if absent.
double Metric(const Metrics& m, const std::string& name, const std::string& labels) {
  const std::string text = prometheus::TextSerializer().Serialize(m.registry()->Collect());
  const std::string key = absl::StrCat(name, "{", labels, "} ");
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, key)) {
      double v;
      if (absl::SimpleAtod(line.substr(key.size()), &v)) return v;
    }
  }
  return 0;
}

std::vector<int8_t> VerifyImages(uint32_t n, int seed) {
  std::vector<int8_t> images(n * kVerifyImageBytes);
  for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<int8_t>(i * 7 + seed);
  return images;
}

inference::ModelInferRequest VerifyRequest(const std::vector<int8_t>& images) {
  inference::ModelInferRequest r;
  r.set_model_name("verify");
  r.set_id("req");
  auto* in = r.add_inputs();
  in->set_name("INPUT");
  in->set_datatype("INT8");
  in->add_shape(images.size() / kVerifyImageBytes);
  in->add_shape(196);
  in->add_shape(768);
  r.add_raw_input_contents(reinterpret_cast<const char*>(images.data()), images.size());
  return r;
}

// A 28 x 28 gray PNG for the fmnist model.
std::string Png() {
  std::vector<uint8_t> gray(28 * 28);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i * 5);
  preprocess::PngSpec spec;
  spec.width = 28;
  spec.height = 28;
  spec.color_type = 0;
  spec.bit_depth = 8;
  auto bytes = preprocess::EncodePng(gray, spec);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return std::string(bytes->begin(), bytes->end());
}

inference::ModelInferRequest EncodedRequest(const std::vector<std::string>& files) {
  inference::ModelInferRequest r;
  r.set_model_name("fmnist");
  auto* in = r.add_inputs();
  in->set_name("IMAGE");
  in->set_datatype("BYTES");
  in->add_shape(files.size());
  in->add_shape(1);
  std::string raw;
  for (const std::string& f : files) {
    const uint32_t len = f.size();
    raw.append(reinterpret_cast<const char*>(&len), 4);
    raw.append(f);
  }
  r.add_raw_input_contents(raw);
  return r;
}

// One request's answer: `done`'s status, how often `done` ran, and whether
// it ran before Infer returned.
struct Outcome {
  inference::ModelInferResponse response;
  absl::Status status;
  std::atomic<int> calls{0};
  std::atomic<bool> returned{false};  // Infer has returned
  bool before_return = false;
  hgpipe::Notification answered;
};

// A real scheduler and model manager with one emulated board per model
// (verify: each logit a digest of its image; fmnist: encoded images decoded
// into the board's slot by the scheduler's fill step on the worker pool),
// the pipeline under test on top.
class RequestPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("hgpipe-pipeline-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    Write("verify", R"(name: "verify" bitstream: "verify"
        input { name: "INPUT" datatype: "INT8" dims: [196, 768] }
        output { name: "OUTPUT" datatype: "INT32" dims: [1000] }
        batching { max_images_per_run: 8 max_queue_delay_us: 0 }
        max_images_per_request: 16)");
    const std::string weights =
        std::string(HGPIPE_TEST_SOURCE_DIR) + "/models/fmnist_vit/fmnist_vit.hgvit";
    Write("fmnist", absl::StrCat(R"(name: "fmnist" bitstream: "vit" weights: ")", weights, R"("
        input_format: ENCODED_IMAGE
        input { name: "IMAGE" }
        output { name: "LOGITS" datatype: "FP32" }
        preprocess { height: 28 width: 28 channels: 1 patch_height: 4 patch_width: 7
                     resize: "none" mean: [0.5] stddev: [0.5] quant_scale: 0.0078125
                     cls_placeholder: "replace_first_patch" }
        batching { max_images_per_run: 8 }
        max_images_per_request: 8)"));
  }
  void TearDown() override {
    Stop();
    fs::remove_all(root_);
  }
  void Write(const std::string& model, const std::string& text) {
    fs::create_directories(root_ / model);
    std::ofstream(root_ / model / "config.pbtxt") << text;
  }
  void Start() {
    // The scheduler's fill executor, as in the server: decoding runs there.
    workers_ = std::make_unique<WorkerPool>(2, /*max_queued=*/0);
    scheduler::Scheduler::Options so;
    so.clock = &clock_;
    so.observer = &observers_;
    so.fill_executor = workers_.get();
    scheduler_ = *scheduler::Scheduler::Create(so);
    BoardOptions bo;
    bo.program_time = absl::Milliseconds(1);
    bo.reset_time = absl::Milliseconds(1);
    factory_ = std::make_unique<BoardFactory>(*ParseBoardSpec("sim:1"), bo, &clock_);
    ModelManager::Options o;
    o.repository = root_.string();
    o.scheduler = scheduler_.get();
    o.metrics = &metrics_;
    o.boards = factory_.get();
    o.clock = &clock_;
    manager_ = std::make_unique<ModelManager>(std::move(o));
    ASSERT_TRUE(manager_->LoadAtStartup({}).ok());
    pipeline_ = std::make_unique<RequestPipeline>(manager_.get(), scheduler_.get(), &metrics_,
                                                  &statistics_);
    pipeline_->SetReady(true);
  }
  // Everything quiet: no thread of the pipeline's runs after this.
  void Stop() {
    manager_.reset();
    if (scheduler_ != nullptr) scheduler_->Shutdown();  // waits for its fill tasks
    scheduler_.reset();
    workers_.reset();  // joins
  }

  // Runs `request` through the pipeline and waits for its answer.
  void Run(const inference::ModelInferRequest& request, Outcome* out,
           absl::Time deadline = absl::InfiniteFuture()) {
    Send(out, request, deadline);
    ASSERT_TRUE(out->answered.WaitForNotificationWithTimeout(absl::Seconds(120)));
  }
  // Runs `request` through the pipeline; `out` says when it is answered.
  void Send(Outcome* out, const inference::ModelInferRequest& request,
            absl::Time deadline = absl::InfiniteFuture()) {
    pipeline_->Infer(request, &out->response, deadline, {}, [out](absl::Status s) {
      out->before_return = !out->returned.load();
      out->status = std::move(s);
      out->calls.fetch_add(1);
      out->answered.Notify();
    });
    out->returned.store(true);
  }

  int ModelId(const std::string& name) {
    auto ref = manager_->Find(name, "");
    EXPECT_TRUE(ref.ok()) << ref.status();
    return ref.ok() ? ref->model->model_id() : -1;
  }
  inference::InferStatistics Stats(const std::string& name) {
    inference::ModelStatistics s;
    statistics_.Fill(ModelId(name), &s);
    return s.inference_stats();
  }

  fs::path root_;
  RealClock clock_;
  Metrics metrics_;
  InferStatistics statistics_;
  ObserverFanout observers_{{&metrics_, &statistics_}};
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::unique_ptr<BoardFactory> factory_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<RequestPipeline> pipeline_;
};

TEST_F(RequestPipelineTest, AnswersWithEachImagesOwnLogitsAndCountsTheRequest) {
  Start();
  const std::vector<int8_t> images = VerifyImages(3, 1);
  const inference::ModelInferRequest request = VerifyRequest(images);
  Outcome out;
  Run(request, &out);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_EQ(out.response.model_name(), "verify");
  EXPECT_EQ(out.response.model_version(), "1");
  EXPECT_EQ(out.response.id(), "req");
  ASSERT_EQ(out.response.outputs_size(), 1);
  EXPECT_EQ(out.response.outputs(0).name(), "OUTPUT");
  EXPECT_THAT(out.response.outputs(0).shape(), ElementsAre(3, kVerifyClasses));
  ASSERT_EQ(out.response.raw_output_contents(0).size(), 3 * kVerifyClasses * sizeof(int32_t));
  for (uint32_t i = 0; i < 3; ++i) {
    std::vector<int32_t> want(kVerifyClasses), got(kVerifyClasses);
    verify::ExpectedLogits(images.data() + i * kVerifyImageBytes, kVerifyImageBytes, kVerifyClasses,
                           want.data());
    std::memcpy(got.data(),
                out.response.raw_output_contents(0).data() + i * kVerifyClasses * sizeof(int32_t),
                kVerifyClasses * sizeof(int32_t));
    EXPECT_EQ(got, want) << "image " << i;
  }
  EXPECT_EQ(Metric(metrics_, "hgpipe_requests_total", R"(code="OK",model="verify")"), 1);
  EXPECT_EQ(Metric(metrics_, "hgpipe_images_total", R"(model="verify")"), 3);
  const inference::InferStatistics s = Stats("verify");
  EXPECT_EQ(s.success().count(), 1u);
  EXPECT_EQ(s.fail().count(), 0u);
}

TEST_F(RequestPipelineTest, UnknownModelIsNotFoundBeforeInferReturns) {
  Start();
  inference::ModelInferRequest request = VerifyRequest(VerifyImages(1, 2));
  request.set_model_name("nope");
  Outcome out;
  Run(request, &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kNotFound) << out.status;
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_TRUE(out.before_return);
  EXPECT_EQ(Metric(metrics_, "hgpipe_requests_total", R"(code="NOT_FOUND",model="_unknown")"), 1);
}

TEST_F(RequestPipelineTest, BadInputIsRefusedBeforeAnyWorkAndCountedAsFailed) {
  Start();
  inference::ModelInferRequest request = VerifyRequest(VerifyImages(1, 3));
  request.mutable_inputs(0)->set_datatype("FP32");
  Outcome out;
  Run(request, &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kInvalidArgument) << out.status;
  EXPECT_THAT(out.status.message(), HasSubstr("model 'verify'"));
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_TRUE(out.before_return);
  EXPECT_EQ(out.response.outputs_size(), 0);  // the response is left alone
  EXPECT_EQ(out.response.model_name(), "");
  EXPECT_EQ(Metric(metrics_, "hgpipe_requests_total", R"(code="INVALID_ARGUMENT",model="verify")"),
            1);
  const inference::InferStatistics s = Stats("verify");
  EXPECT_EQ(s.fail().count(), 1u);
  EXPECT_EQ(s.success().count(), 0u);
}

TEST_F(RequestPipelineTest, SharedMemoryRegionNotRegisteredIsNotFound) {
  Start();
  inference::ModelInferRequest request = VerifyRequest(VerifyImages(1, 9));
  request.clear_raw_input_contents();
  auto& params = *request.mutable_inputs(0)->mutable_parameters();
  params["shared_memory_region"].set_string_param("camera0");
  params["shared_memory_byte_size"].set_int64_param(kVerifyImageBytes);
  Outcome out;
  Run(request, &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kNotFound) << out.status;
  EXPECT_THAT(out.status.message(), HasSubstr("camera0"));
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_EQ(Stats("verify").fail().count(), 1u);
}

TEST_F(RequestPipelineTest, BadPolicyParameterIsRefused) {
  Start();
  inference::ModelInferRequest request = VerifyRequest(VerifyImages(1, 4));
  (*request.mutable_parameters())["timeout"].set_string_param("soon");
  Outcome out;
  Run(request, &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kInvalidArgument) << out.status;
  EXPECT_THAT(out.status.message(), HasSubstr("timeout"));
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_EQ(Stats("verify").fail().count(), 1u);
}

TEST_F(RequestPipelineTest, MinAccuracyNoVariantReachesIsRefusedBeforeAnyWork) {
  Start();
  inference::ModelInferRequest request = VerifyRequest(VerifyImages(1, 5));
  (*request.mutable_parameters())["min_accuracy"].set_double_param(0.5);
  Outcome out;
  Run(request, &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kInvalidArgument) << out.status;
  EXPECT_THAT(out.status.message(), HasSubstr("min_accuracy"));
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_TRUE(out.before_return);
  EXPECT_EQ(out.response.outputs_size(), 0);
  EXPECT_EQ(Stats("verify").fail().count(), 1u);
}

TEST_F(RequestPipelineTest, DeadlineAlreadyPassedIsDeadlineExceeded) {
  Start();
  const inference::ModelInferRequest request = VerifyRequest(VerifyImages(1, 6));
  Outcome out;
  Run(request, &out, absl::Now() - absl::Seconds(1));
  EXPECT_EQ(out.status.code(), absl::StatusCode::kDeadlineExceeded) << out.status;
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_EQ(Metric(metrics_, "hgpipe_requests_total", R"(code="DEADLINE_EXCEEDED",model="verify")"),
            1);
  EXPECT_EQ(Stats("verify").fail().count(), 1u);
}

TEST_F(RequestPipelineTest, DrainingRefusesNewRequestsWithUnavailable) {
  Start();
  EXPECT_TRUE(pipeline_->Serving());
  EXPECT_FALSE(pipeline_->Draining());
  pipeline_->StartDraining();
  EXPECT_FALSE(pipeline_->Serving());
  EXPECT_FALSE(pipeline_->Ready());
  EXPECT_TRUE(pipeline_->Draining());
  const absl::Time before = absl::Now();
  Outcome out;
  Run(VerifyRequest(VerifyImages(1, 7)), &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable) << out.status;
  EXPECT_THAT(out.status.message(), HasSubstr("shutting down"));
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_TRUE(out.before_return);
  EXPECT_GE(pipeline_->last_infer_call(), before);  // refused calls count as calls
}

TEST_F(RequestPipelineTest, EncodedImagesArePreprocessedAndAnswered) {
  Start();
  const inference::ModelInferRequest request = EncodedRequest({Png(), Png()});
  Outcome out;
  Run(request, &out);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.calls.load(), 1);
  ASSERT_EQ(out.response.outputs_size(), 1);
  EXPECT_EQ(out.response.outputs(0).datatype(), "FP32");
  EXPECT_THAT(out.response.outputs(0).shape(), ElementsAre(2, 10));
  EXPECT_EQ(out.response.raw_output_contents(0).size(), 2 * 10 * sizeof(float));
  // The same image twice: the same logits.
  const std::string& raw = out.response.raw_output_contents(0);
  EXPECT_EQ(raw.substr(0, 40), raw.substr(40, 40));
  EXPECT_EQ(Stats("fmnist").success().count(), 1u);
}

TEST_F(RequestPipelineTest, AnImageThatDoesNotDecodeFailsTheRequestNamingIt) {
  Start();
  const inference::ModelInferRequest request = EncodedRequest({Png(), "not a png", "nor this"});
  Outcome out;
  Run(request, &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kInvalidArgument) << out.status;
  EXPECT_THAT(out.status.message(), HasSubstr("model 'fmnist': image 1: "));
  EXPECT_EQ(out.calls.load(), 1);
  EXPECT_EQ(Metric(metrics_, "hgpipe_requests_total", R"(code="INVALID_ARGUMENT",model="fmnist")"),
            1);
  EXPECT_EQ(Stats("fmnist").fail().count(), 1u);
}

// What the decoder refuses from a header alone is refused on the caller's
// thread, before the images are queued: no board slot is held for it.
TEST_F(RequestPipelineTest, AnImageWhoseHeaderIsRefusedNeverReachesTheScheduler) {
  Start();
  const std::string good = Png();
  std::string gif = "GIF89a";
  gif.append(32, '\0');
  const inference::ModelInferRequest request = EncodedRequest({good, gif, good});
  Outcome out;
  Run(request, &out);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kInvalidArgument) << out.status;
  EXPECT_THAT(out.status.message(),
              HasSubstr("model 'fmnist': image 1: unsupported image format GIF"));
  EXPECT_TRUE(out.before_return);
  EXPECT_EQ(Stats("fmnist").fail().count(), 1u);
}

// An image whose header is sound but whose data is cut short is found when
// its run is filled: it fails its own request, naming it, and another
// request in flight at the same time is served with its own logits.
TEST_F(RequestPipelineTest, AnImageThatFailsToDecodeInTheSlotFailsOnlyItsRequest) {
  Start();
  const std::string good = Png();
  const std::string cut = good.substr(0, good.size() - 24);  // IDAT's end, IEND
  const inference::ModelInferRequest bad_request = EncodedRequest({good, cut});
  const inference::ModelInferRequest good_request = EncodedRequest({good, good, good});
  for (int round = 0; round < 20; ++round) {
    Outcome bad, fine;
    Send(&bad, bad_request);
    Send(&fine, good_request);
    ASSERT_TRUE(bad.answered.WaitForNotificationWithTimeout(absl::Seconds(120)));
    ASSERT_TRUE(fine.answered.WaitForNotificationWithTimeout(absl::Seconds(120)));
    EXPECT_EQ(bad.status.code(), absl::StatusCode::kInvalidArgument) << bad.status;
    EXPECT_THAT(bad.status.message(), HasSubstr("model 'fmnist': image 1: truncated PNG"));
    EXPECT_EQ(bad.calls.load(), 1);
    ASSERT_TRUE(fine.status.ok()) << fine.status;
    const std::string& raw = fine.response.raw_output_contents(0);
    ASSERT_EQ(raw.size(), 3 * 10 * sizeof(float));
    EXPECT_EQ(raw.substr(0, 40), raw.substr(40, 40));
    EXPECT_EQ(raw.substr(0, 40), raw.substr(80, 40));
  }
  EXPECT_EQ(Stats("fmnist").fail().count(), 20u);
  EXPECT_EQ(Stats("fmnist").success().count(), 20u);
}

// Many requests at once from several threads, each outcome of the pipeline
// among them: every `done` runs exactly once (checked once every thread of
// the pipeline has stopped), and every request is counted once.
TEST_F(RequestPipelineTest, EveryRequestIsAnsweredExactlyOnce) {
  Start();
  constexpr int kPerThread = 24;
  constexpr int kThreads = 3;
  const std::vector<int8_t> images = VerifyImages(2, 8);
  inference::ModelInferRequest good = VerifyRequest(images);
  inference::ModelInferRequest unknown = good;
  unknown.set_model_name("nope");
  inference::ModelInferRequest bad = good;
  bad.mutable_inputs(0)->set_shape(1, 195);
  const inference::ModelInferRequest encoded = EncodedRequest({Png()});
  const inference::ModelInferRequest* kinds[] = {&good, &unknown, &bad, &encoded};
  std::vector<std::unique_ptr<Outcome>> outs(kPerThread * kThreads);
  for (auto& o : outs) o = std::make_unique<Outcome>();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int k = t * kPerThread + i;
        Send(outs[k].get(), *kinds[k % 4]);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& o : outs) ASSERT_TRUE(o->answered.WaitForNotificationWithTimeout(absl::Seconds(120)));
  const int verify_id = ModelId("verify");
  const int fmnist_id = ModelId("fmnist");
  Stop();
  int ok = 0;
  for (size_t k = 0; k < outs.size(); ++k) {
    EXPECT_EQ(outs[k]->calls.load(), 1) << "request " << k;
    const absl::StatusCode want = k % 4 == 1   ? absl::StatusCode::kNotFound
                                  : k % 4 == 2 ? absl::StatusCode::kInvalidArgument
                                               : absl::StatusCode::kOk;
    // A good request may meet a full queue; nothing else may go wrong.
    if (outs[k]->status.code() != absl::StatusCode::kResourceExhausted) {
      EXPECT_EQ(outs[k]->status.code(), want) << "request " << k << ": " << outs[k]->status;
    }
    ok += outs[k]->status.ok();
  }
  inference::ModelStatistics v, f;
  statistics_.Fill(verify_id, &v);
  statistics_.Fill(fmnist_id, &f);
  const uint64_t counted =
      v.inference_stats().success().count() + v.inference_stats().fail().count() +
      f.inference_stats().success().count() + f.inference_stats().fail().count();
  // Every request that found its model is in its model's statistics.
  EXPECT_EQ(counted, outs.size() / 4 * 3);
  EXPECT_EQ(v.inference_stats().success().count() + f.inference_stats().success().count(),
            static_cast<uint64_t>(ok));
  EXPECT_EQ(Metric(metrics_, "hgpipe_requests_total", R"(code="NOT_FOUND",model="_unknown")"),
            outs.size() / 4);
}

}  // namespace
}  // namespace hgpipe::server
