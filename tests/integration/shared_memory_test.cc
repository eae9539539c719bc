// Triton's system shared memory extension through the real binary, as
// Triton's clients use it: the client creates POSIX shared memory objects,
// registers regions of them (gRPC and REST), names them in an inference's
// input and output parameters, and reads the answer from the output region.
// The answers equal the bytes path's; bad regions are clean errors that leave
// other requests alone; a region unregistered while a request uses it stays
// mapped until that request is done.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/mutex.h"
#include "clients/client.h"
#include "clients/shared_memory.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http_client.h"
#include "preprocess/image_encoder.h"
#include "rapidjson/document.h"
#include "server_process.h"
#include "verify_requests.h"

namespace hgpipe::testing {
namespace {

using clients::SetSharedMemory;
using clients::SharedMemoryObject;
using ::testing::HasSubstr;

constexpr size_t kLogitBytes = clients::kClasses * sizeof(int32_t);

std::string VerifyRepository() {
  return WriteModelRepository("verify", R"(
name: "verify" bitstream: "verify"
input { name: "INPUT" datatype: "INT8" dims: [196, 768] }
output { name: "OUTPUT" datatype: "INT32" dims: [1000] }
max_images_per_request: 16)");
}

std::unique_ptr<SharedMemoryObject> Object(const std::string& name, size_t size) {
  static std::atomic<int> counter{0};
  auto o = SharedMemoryObject::Create(
      absl::StrCat("/hgpipe_it_", getpid(), "_", counter.fetch_add(1), "_", name), size);
  EXPECT_TRUE(o.ok()) << o.status();
  return o.ok() ? *std::move(o) : nullptr;
}

// A verify request for `n` images whose input is `in_bytes` at `in_offset`
// of region `in_region` and, if `out_region` is set, whose output goes to
// `out_offset` of it.
inference::ModelInferRequest ShmRequest(int n, const std::string& in_region, uint64_t in_offset,
                                        const std::string& out_region = "", uint64_t out_offset = 0,
                                        uint64_t out_bytes = 0) {
  inference::ModelInferRequest req;
  req.set_model_name("verify");
  auto* in = req.add_inputs();
  in->set_name("INPUT");
  in->set_datatype("INT8");
  for (int64_t d : {int64_t{n}, clients::kImageTokens, clients::kTokenValues}) in->add_shape(d);
  SetSharedMemory(in->mutable_parameters(), in_region, n * clients::kImageBytes, in_offset);
  auto* out = req.add_outputs();
  out->set_name("OUTPUT");
  if (!out_region.empty()) {
    SetSharedMemory(out->mutable_parameters(), out_region,
                    out_bytes != 0 ? out_bytes : n * kLogitBytes, out_offset);
  }
  return req;
}

// The logits in `data` as the raw output of a response, for CheckVerifyResponse.
inference::ModelInferResponse FromRegion(const char* data, int n) {
  inference::ModelInferResponse resp;
  auto* out = resp.add_outputs();
  out->set_name("OUTPUT");
  out->set_datatype("INT32");
  out->add_shape(n);
  out->add_shape(clients::kClasses);
  resp.add_raw_output_contents()->assign(data, n * kLogitBytes);
  return resp;
}

class SharedMemoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = ServerProcess::Start(
        {"--boards=sim:1", "--allow-client-shm=true", "--model-repository=" + VerifyRepository()});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    if (server_ == nullptr) return;
    const ExitResult r = server_->Stop(SIGTERM);
    EXPECT_TRUE(r.exited && r.code == 0) << r.log;
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    client_ = *clients::InferenceClient::Create(server_->grpc_target());
  }
  void TearDown() override {
    if (client_ != nullptr) {
      EXPECT_TRUE(client_->UnregisterSystemSharedMemory().ok());
    }
  }
  std::string Url(const std::string& path) { return server_->http_url() + path; }

  static ServerProcess* server_;
  static std::atomic<uint64_t> stamps_;
  std::unique_ptr<clients::InferenceClient> client_;
};
ServerProcess* SharedMemoryTest::server_ = nullptr;
std::atomic<uint64_t> SharedMemoryTest::stamps_{0};

TEST_F(SharedMemoryTest, GrpcFlowAnswersAsTheBytesPath) {
  const int n = 3;
  const std::vector<int8_t> images = StampedImages(n, stamps_);
  // Offsets that are not page-aligned, in objects holding other data too.
  auto in = Object("in", 100 + images.size());
  auto out = Object("out", 32 + n * kLogitBytes);
  ASSERT_TRUE(in && out);
  std::memcpy(in->data() + 100, images.data(), images.size());
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("input", in->key(), images.size(), 100).ok());
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("output", out->key(), out->size()).ok());

  auto status = client_->SystemSharedMemoryStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_EQ(status->regions_size(), 2);
  EXPECT_EQ(status->regions().at("input").key(), in->key());
  EXPECT_EQ(status->regions().at("input").offset(), 100u);
  EXPECT_EQ(status->regions().at("input").byte_size(), images.size());
  EXPECT_EQ(status->regions().at("output").byte_size(), out->size());
  EXPECT_EQ(client_->SystemSharedMemoryStatus("input")->regions_size(), 1);
  EXPECT_EQ(client_->SystemSharedMemoryStatus("nope").status().code(), absl::StatusCode::kNotFound);
  auto metadata = client_->ServerMetadata();
  ASSERT_TRUE(metadata.ok());
  EXPECT_THAT(metadata->extensions(), ::testing::Contains("system_shared_memory"));

  auto bytes = client_->Infer(*clients::MakeImageRequest("verify", images));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE(CheckVerifyResponse(*bytes, images).ok());

  // Input and output in shared memory.
  auto resp = client_->Infer(ShmRequest(n, "input", 0, "output", 32));
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->outputs_size(), 1);
  EXPECT_EQ(resp->outputs(0).name(), "OUTPUT");
  EXPECT_EQ(resp->outputs(0).datatype(), "INT32");
  EXPECT_THAT(resp->outputs(0).shape(), ::testing::ElementsAre(n, clients::kClasses));
  ASSERT_EQ(resp->raw_output_contents_size(), 1);
  EXPECT_TRUE(resp->raw_output_contents(0).empty());
  EXPECT_EQ(std::string(out->data() + 32, n * kLogitBytes), bytes->raw_output_contents(0));
  EXPECT_TRUE(CheckVerifyResponse(FromRegion(out->data() + 32, n), images).ok());

  // Input in shared memory, output as bytes; one image at an offset.
  auto one = client_->Infer(ShmRequest(1, "input", 2 * clients::kImageBytes));
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->raw_output_contents(0),
            bytes->raw_output_contents(0).substr(2 * kLogitBytes, kLogitBytes));

  ASSERT_TRUE(client_->UnregisterSystemSharedMemory("input").ok());
  EXPECT_EQ(client_->SystemSharedMemoryStatus()->regions_size(), 1);
  ASSERT_TRUE(client_->UnregisterSystemSharedMemory().ok());
  EXPECT_EQ(client_->SystemSharedMemoryStatus()->regions_size(), 0);
}

TEST_F(SharedMemoryTest, RestFlowAnswersAsTheBytesPath) {
  const int n = 2;
  const std::vector<int8_t> images = StampedImages(n, stamps_);
  auto in = Object("rin", images.size());
  auto out = Object("rout", n * kLogitBytes);
  ASSERT_TRUE(in && out);
  std::memcpy(in->data(), images.data(), images.size());
  HttpResult r = HttpCall(
      "POST", Url("/v2/systemsharedmemory/region/rest_in/register"),
      absl::StrCat(R"({"key":")", in->key(), R"(","offset":0,"byte_size":)", images.size(), "}"));
  ASSERT_EQ(r.status, 200) << r.body;
  r = HttpCall("POST", Url("/v2/systemsharedmemory/region/rest_out/register"),
               absl::StrCat(R"({"key":")", out->key(), R"(","byte_size":)", out->size(), "}"));
  ASSERT_EQ(r.status, 200) << r.body;
  r = HttpCall("POST", Url("/v2/systemsharedmemory/region/rest_out/register"),
               absl::StrCat(R"({"key":")", out->key(), R"(","byte_size":)", out->size(), "}"));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(ErrorMessage(r.body), HasSubstr("already registered"));

  r = HttpCall("GET", Url("/v2/systemsharedmemory/status"));
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document doc;
  doc.Parse(r.body.data(), r.body.size());
  ASSERT_TRUE(doc.IsArray()) << r.body;
  ASSERT_EQ(doc.Size(), 2u);
  EXPECT_STREQ(doc[0]["name"].GetString(), "rest_in");
  EXPECT_EQ(doc[0]["key"].GetString(), in->key());
  EXPECT_EQ(doc[0]["byte_size"].GetUint64(), images.size());
  EXPECT_EQ(doc[1]["offset"].GetUint64(), 0u);
  r = HttpCall("GET", Url("/v2/systemsharedmemory/region/rest_out/status"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("rest_out"));
  EXPECT_EQ(HttpCall("GET", Url("/v2/systemsharedmemory/region/nope/status")).status, 404);
  EXPECT_EQ(HttpCall("POST", Url("/v2/systemsharedmemory/status")).status, 405);

  // The request as tritonclient.http sends it: parameters, no data.
  const std::string body = absl::StrCat(
      R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[)", n,
      R"(,196,768],"parameters":{"shared_memory_region":"rest_in","shared_memory_byte_size":)",
      images.size(),
      R"(}}],"outputs":[{"name":"OUTPUT","parameters":{"shared_memory_region":"rest_out","shared_memory_byte_size":)",
      out->size(), "}}]}");
  r = HttpCall("POST", Url("/v2/models/verify/infer"), body);
  ASSERT_EQ(r.status, 200) << r.body;
  doc.Parse(r.body.data(), r.body.size());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  const auto& o = doc["outputs"][0];
  EXPECT_STREQ(o["name"].GetString(), "OUTPUT");
  EXPECT_FALSE(o.HasMember("data")) << r.body;
  EXPECT_FALSE(o.HasMember("parameters")) << r.body;
  auto bytes = client_->Infer(*clients::MakeImageRequest("verify", images));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(std::string(out->data(), n * kLogitBytes), bytes->raw_output_contents(0));
  EXPECT_TRUE(CheckVerifyResponse(FromRegion(out->data(), n), images).ok());

  // Shared memory and data for one input: refused.
  const std::string both = absl::StrCat(
      R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,196,768],"data":[1],)",
      R"("parameters":{"shared_memory_region":"rest_in","shared_memory_byte_size":150528}}]})");
  r = HttpCall("POST", Url("/v2/models/verify/infer"), both);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(ErrorMessage(r.body), HasSubstr("shared_memory_region"));

  EXPECT_EQ(HttpCall("POST", Url("/v2/systemsharedmemory/region/rest_in/unregister")).status, 200);
  r = HttpCall("GET", Url("/v2/systemsharedmemory/status"));
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("rest_in")));
  EXPECT_EQ(HttpCall("POST", Url("/v2/systemsharedmemory/unregister")).status, 200);
  EXPECT_EQ(HttpCall("GET", Url("/v2/systemsharedmemory/status")).body, "[]");
}

TEST_F(SharedMemoryTest, BadRegionsAreCleanErrorsAndOthersAreServed) {
  const std::vector<int8_t> images = StampedImages(2, stamps_);
  auto in = Object("bad_in", images.size());
  auto out = Object("bad_out", 2 * kLogitBytes);
  ASSERT_TRUE(in && out);
  std::memcpy(in->data(), images.data(), images.size());
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("in", in->key(), in->size()).ok());
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("out", out->key(), out->size()).ok());

  // Registration errors.
  using C = absl::StatusCode;
  EXPECT_EQ(client_->RegisterSystemSharedMemory("in", in->key(), 16).code(), C::kAlreadyExists);
  EXPECT_EQ(client_->RegisterSystemSharedMemory("x", "/hgpipe_no_such_object", 16).code(),
            C::kNotFound);
  EXPECT_EQ(client_->RegisterSystemSharedMemory("x", "/../../etc/passwd", 16).code(),
            C::kInvalidArgument);
  EXPECT_EQ(client_->RegisterSystemSharedMemory("x", in->key(), in->size() + 1).code(),
            C::kInvalidArgument);
  EXPECT_EQ(client_->RegisterSystemSharedMemory("x", in->key(), 16, in->size()).code(),
            C::kInvalidArgument);
  EXPECT_EQ(client_->RegisterSystemSharedMemory("x", in->key(), 0).code(), C::kInvalidArgument);

  struct Case {
    const char* what;
    inference::ModelInferRequest request;
    C code;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back({"no such region", ShmRequest(1, "nope", 0), C::kNotFound, "'nope'"});
  cases.push_back({"offset past the end", ShmRequest(1, "in", images.size()), C::kInvalidArgument,
                   "past its end"});
  cases.push_back(
      {"range past the end", ShmRequest(2, "in", 1), C::kInvalidArgument, "past its end"});
  // Region too small for the tensor: the byte size does not match the shape.
  inference::ModelInferRequest small = ShmRequest(2, "in", 0);
  (*small.mutable_inputs(0)->mutable_parameters())["shared_memory_byte_size"].set_int64_param(
      clients::kImageBytes);
  cases.push_back(
      {"byte size below the shape", std::move(small), C::kInvalidArgument, "needs 301056"});
  cases.push_back({"output region too small", ShmRequest(2, "in", 0, "out", 0, kLogitBytes),
                   C::kInvalidArgument, "cannot hold"});
  inference::ModelInferRequest no_size = ShmRequest(1, "in", 0);
  no_size.mutable_inputs(0)->mutable_parameters()->erase("shared_memory_byte_size");
  cases.push_back(
      {"no byte size", std::move(no_size), C::kInvalidArgument, "shared_memory_byte_size"});
  inference::ModelInferRequest both = ShmRequest(1, "in", 0);
  both.add_raw_input_contents()->assign(clients::kImageBytes, 'x');
  cases.push_back({"contents too", std::move(both), C::kInvalidArgument, "one or the other"});
  inference::ModelInferRequest classified = ShmRequest(1, "in", 0, "out", 0);
  (*classified.mutable_outputs(0)->mutable_parameters())["classification"].set_int64_param(3);
  cases.push_back({"classification", std::move(classified), C::kInvalidArgument, "classification"});
  for (const Case& c : cases) {
    auto r = client_->Infer(c.request);
    EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(c.message)) << c.what;
    // The server goes on serving both paths, with the right answers.
    auto good = client_->Infer(ShmRequest(2, "in", 0, "out", 0));
    ASSERT_TRUE(good.ok()) << c.what << ": " << good.status();
    EXPECT_TRUE(CheckVerifyResponse(FromRegion(out->data(), 2), images).ok()) << c.what;
    const std::vector<int8_t> other = StampedImages(1, stamps_);
    auto plain = client_->Infer(*clients::MakeImageRequest("verify", other));
    ASSERT_TRUE(plain.ok()) << c.what << ": " << plain.status();
    EXPECT_TRUE(CheckVerifyResponse(*plain, other).ok()) << c.what;
  }
}

// hgpipe-perf's perf_analyzer modes: images in system shared memory, over
// unary calls and over a stream; every answer checked against its input's
// digest, read from the output region.
TEST_F(SharedMemoryTest, PerfToolModesAnswerCorrectly) {
  const std::vector<std::vector<std::string>> modes = {
      {"--shared-memory=system"}, {"--streaming"}, {"--shared-memory=system", "--streaming"}};
  for (const auto& mode : modes) {
    std::vector<std::string> args = {"--url=" + server_->grpc_target(),
                                     "--model=verify",
                                     "--verify",
                                     "--duration=1",
                                     "--warmup=0",
                                     "--concurrency=4",
                                     "--images-per-request=2",
                                     "--request-pool=3",
                                     "--json",
                                     "--progress=false"};
    args.insert(args.end(), mode.begin(), mode.end());
    const ExitResult r = RunToExit(BinDir() + "/hgpipe-perf", args, absl::Seconds(120));
    const std::string what = absl::StrJoin(mode, " ");
    EXPECT_EQ(r.code, 0) << what << "\n" << r.log;
    EXPECT_THAT(r.log, HasSubstr("\"error_count\": 0")) << what;
    EXPECT_THAT(r.log, ::testing::Not(HasSubstr("\"requests_ok\": 0,"))) << what;
    // Its regions are gone when it ends.
    EXPECT_EQ(client_->SystemSharedMemoryStatus()->regions_size(), 0) << what;
  }
}

// One board with one slot, slowed 1000x: a request holds the board for
// about 2 s (HG-PIPE's 1.9 ms latency x 1000) while the next one waits in the
// queue (long enough for the test to act on the queued one).
class SharedMemoryUnregisterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ServerProcess::Start({"--boards=sim:1", "--board-slots=1", "--allow-client-shm=true",
                                   "--watchdog-ms=0", "--canary=false",
                                   "--emulated-faults=sim0=slow@0:x1000",
                                   "--model-repository=" + VerifyRepository()});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    url_ = server_->metrics_url();
    client_ = *clients::InferenceClient::Create(server_->grpc_target());
    images_ = StampedImages(2, stamps_);
  }
  void TearDown() override {
    if (server_ == nullptr) return;
    client_.reset();
    const ExitResult r = server_->Stop(SIGTERM);
    EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  }

  std::unique_ptr<ServerProcess> server_;
  std::string url_;
  std::unique_ptr<clients::InferenceClient> client_;
  std::atomic<uint64_t> stamps_{0};
  std::vector<int8_t> images_;  // two stamped images
};

// A region unregistered while requests use it: one on the (slowed) board,
// one queued behind it. Both finish with the right answer, written to the
// output region the client still maps; a request after the unregister is
// NOT_FOUND; the name can be registered again at once.
TEST_F(SharedMemoryUnregisterTest, RequestsInFlightKeepTheirRegions) {
  auto in = Object("busy_in", images_.size());
  auto out = Object("busy_out", 2 * kLogitBytes);
  ASSERT_TRUE(in && out);
  std::memcpy(in->data(), images_.data(), images_.size());
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("in", in->key(), in->size()).ok());
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("out", out->key(), out->size()).ok());

  hgpipe::Mutex mu;
  std::vector<absl::StatusOr<inference::ModelInferResponse>> done;
  auto record = [&](absl::StatusOr<inference::ModelInferResponse> r) {
    hgpipe::MutexLock l(&mu);
    done.push_back(std::move(r));
  };
  // Image 0 to output row 0, image 1 to output row 1.
  client_->InferAsync(ShmRequest(1, "in", 0, "out", 0), record, absl::Seconds(120));
  ASSERT_TRUE(WaitForMetric(url_, "hgpipe_board_images_in_flight", R"(board="sim0",model="verify")",
                            [](double v) { return v == 1; })
                  .ok());
  client_->InferAsync(ShmRequest(1, "in", clients::kImageBytes, "out", kLogitBytes), record,
                      absl::Seconds(120));
  ASSERT_TRUE(WaitForMetric(url_, "hgpipe_queue_images", R"(model="verify")", [](double v) {
                return v == 1;
              }).ok());
  ASSERT_TRUE(client_->UnregisterSystemSharedMemory("in").ok());
  ASSERT_TRUE(client_->UnregisterSystemSharedMemory("out").ok());
  EXPECT_EQ(client_->SystemSharedMemoryStatus()->regions_size(), 0);
  auto late = client_->Infer(ShmRequest(1, "in", 0));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kNotFound) << late.status();
  // Registered again under the same name, on another object.
  auto other = Object("busy_other", images_.size());
  ASSERT_TRUE(other);
  EXPECT_TRUE(client_->RegisterSystemSharedMemory("in", other->key(), other->size()).ok());

  {
    hgpipe::MutexLock l(&mu);
    auto both_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done.size() == 2; };
    mu.Await(absl::Condition(&both_done));
    for (const auto& r : done) ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_TRUE(CheckVerifyResponse(FromRegion(out->data(), 2), images_).ok());
}

// The client truncates its object while a request that reads it waits in
// the queue (its region passed the size check at arrival): the read past
// the object's new end would raise SIGBUS. The server refuses that request,
// refuses the region until it is registered again, and serves on.
TEST_F(SharedMemoryUnregisterTest, ObjectShrunkWhileQueuedIsRefusedAndTheServerLives) {
  auto first = Object("first", clients::kImageBytes);
  auto second = Object("second", clients::kImageBytes);
  ASSERT_TRUE(first && second);
  std::memcpy(first->data(), images_.data(), clients::kImageBytes);
  std::memcpy(second->data(), images_.data() + clients::kImageBytes, clients::kImageBytes);
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("first", first->key(), first->size()).ok());
  ASSERT_TRUE(client_->RegisterSystemSharedMemory("second", second->key(), second->size()).ok());

  hgpipe::Mutex mu;
  std::map<std::string, absl::StatusOr<inference::ModelInferResponse>> done;
  auto record = [&](std::string which) {
    return [&, which](absl::StatusOr<inference::ModelInferResponse> r) {
      hgpipe::MutexLock l(&mu);
      done.emplace(which, std::move(r));
    };
  };
  client_->InferAsync(ShmRequest(1, "first", 0), record("first"), absl::Seconds(120));
  ASSERT_TRUE(WaitForMetric(url_, "hgpipe_board_images_in_flight", R"(board="sim0",model="verify")",
                            [](double v) { return v == 1; })
                  .ok());
  client_->InferAsync(ShmRequest(1, "second", 0), record("second"), absl::Seconds(120));
  ASSERT_TRUE(WaitForMetric(url_, "hgpipe_queue_images", R"(model="verify")", [](double v) {
                return v == 1;
              }).ok());
  // Queued, its size check passed: now the client shrinks the object.
  const int fd = shm_open(second->key().c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 0), 0);
  close(fd);
  {
    hgpipe::MutexLock l(&mu);
    auto both = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done.size() == 2; };
    mu.Await(absl::Condition(&both));
    ASSERT_TRUE(done.at("first").ok()) << done.at("first").status();
    const std::vector<int8_t> image0(images_.begin(), images_.begin() + clients::kImageBytes);
    EXPECT_TRUE(CheckVerifyResponse(*done.at("first"), image0).ok());
    const absl::Status s = done.at("second").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr("shrank (ftruncate) while the server used it"));
  }
  auto again = client_->Infer(ShmRequest(1, "second", 0));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kInvalidArgument) << again.status();
  EXPECT_THAT(again.status().message(), HasSubstr("register it again"));
  // The server serves on: bytes on the wire, and the other region.
  auto bytes = clients::MakeImageRequest("verify", images_);
  ASSERT_TRUE(bytes.ok());
  auto ok = client_->Infer(*bytes);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(CheckVerifyResponse(*ok, images_).ok());
  EXPECT_TRUE(client_->Infer(ShmRequest(1, "first", 0)).ok());
}

// A camera's case: encoded images (PNG files, in Triton's BYTES
// serialization) in shared memory, decoded by the server straight from the
// region; FP32 logits written back; the same as sending the files.
TEST(SharedMemoryImagesTest, EncodedImagesFromSharedMemoryAsFromBytes) {
  auto server = ServerProcess::Start({"--boards=sim:1", "--allow-client-shm=true",
                                      "--model-control-mode=explicit", "--load-model=fmnist_vit"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = *clients::InferenceClient::Create((*server)->grpc_target());
  std::string serialized;  // a 4-byte length, then the file, per image
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::vector<uint8_t> gray(28 * 28);
    for (size_t i = 0; i < gray.size(); ++i)
      gray[i] = static_cast<uint8_t>((i * 7 + seed * 31) % 251);
    preprocess::PngSpec spec;
    spec.width = 28;
    spec.height = 28;
    spec.color_type = 0;
    spec.bit_depth = 8;
    auto png = preprocess::EncodePng(gray, spec);
    ASSERT_TRUE(png.ok()) << png.status();
    const uint32_t len = static_cast<uint32_t>(png->size());
    serialized.append(reinterpret_cast<const char*>(&len), 4);
    serialized.append(png->begin(), png->end());
  }
  auto in = Object("png_in", serialized.size());
  auto out = Object("png_out", 3 * 10 * sizeof(float));
  ASSERT_TRUE(in && out);
  std::memcpy(in->data(), serialized.data(), serialized.size());
  ASSERT_TRUE(client->RegisterSystemSharedMemory("png_in", in->key(), in->size()).ok());
  ASSERT_TRUE(client->RegisterSystemSharedMemory("png_out", out->key(), out->size()).ok());
  auto request = [&](bool shared) {
    inference::ModelInferRequest r;
    r.set_model_name("fmnist_vit");
    auto* t = r.add_inputs();
    t->set_name("IMAGE");
    t->set_datatype("BYTES");
    t->add_shape(3);
    t->add_shape(1);
    auto* o = r.add_outputs();
    o->set_name("LOGITS");
    if (shared) {
      SetSharedMemory(t->mutable_parameters(), "png_in", serialized.size());
      SetSharedMemory(o->mutable_parameters(), "png_out", out->size());
    } else {
      r.add_raw_input_contents(serialized);
    }
    return r;
  };
  auto bytes = client->Infer(request(false));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto shared = client->Infer(request(true));
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(shared->outputs(0).datatype(), "FP32");
  EXPECT_THAT(shared->outputs(0).shape(), ::testing::ElementsAre(3, 10));
  EXPECT_TRUE(shared->raw_output_contents(0).empty());
  EXPECT_EQ(std::string(out->data(), out->size()), bytes->raw_output_contents(0));
  // A region whose bytes are not a BYTES serialization: INVALID_ARGUMENT.
  std::memset(in->data(), 0xff, 4);
  auto bad = client->Infer(request(true));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  client.reset();
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

// Without --allow-client-shm (the default, as Triton's): nothing can be
// registered, and a request naming a region finds none.
TEST(SharedMemoryDisabledTest, RegisterIsRefused) {
  auto server =
      ServerProcess::Start({"--boards=sim:1", "--model-repository=" + VerifyRepository()});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = *clients::InferenceClient::Create((*server)->grpc_target());
  auto obj = Object("off", 4096);
  ASSERT_TRUE(obj);
  absl::Status s = client->RegisterSystemSharedMemory("r", obj->key(), 4096);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("--allow-client-shm"));
  EXPECT_EQ(client->SystemSharedMemoryStatus()->regions_size(), 0);
  EXPECT_EQ(client->Infer(ShmRequest(1, "r", 0)).status().code(), absl::StatusCode::kNotFound);
  client.reset();
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

}  // namespace
}  // namespace hgpipe::testing
