// KServe v2 REST with Triton's extensions over the real binary: metadata,
// health, model config, statistics, repository control, binary and JSON
// tensor data both ways, classification; and the gRPC side of the same
// extensions (ModelConfig, ModelStatistics, load's config override,
// unload_dependents, unserved RPCs); log settings over both.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http_client.h"
#include "grpcpp/grpcpp.h"
#include "proto/grpc_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "server_process.h"
#include "verify_requests.h"

namespace hgpipe::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

rapidjson::Document Json(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  EXPECT_FALSE(doc.HasParseError()) << body;
  return doc;
}

// A verify request with `images` as binary data; outputs binary unless
// `json_output`.
std::string BinaryInferBody(const std::vector<int8_t>& images, bool json_output,
                            std::string* header_length, const std::string& extra_output = "") {
  const int64_t n = static_cast<int64_t>(images.size() / clients::kImageBytes);
  std::string json = absl::StrCat(
      R"({"id":"req-7","inputs":[{"name":"INPUT","datatype":"INT8","shape":[)", n,
      R"(,196,768],"parameters":{"binary_data_size":)", images.size(), "}}]",
      json_output ? "" : R"(,"parameters":{"binary_data_output":true})", extra_output, "}");
  *header_length = std::to_string(json.size());
  json.append(reinterpret_cast<const char*>(images.data()), images.size());
  return json;
}

// The verify response of a REST reply, as the gRPC message, for CheckVerifyResponse.
inference::ModelInferResponse FromRest(const HttpResult& r) {
  inference::ModelInferResponse resp;
  const auto it = r.headers.find("inference-header-content-length");
  const size_t json_size = it == r.headers.end() ? r.body.size() : std::stoul(it->second);
  rapidjson::Document doc = Json(r.body.substr(0, json_size));
  if (!doc.IsObject() || !doc.HasMember("outputs")) return resp;
  const auto& o = doc["outputs"][0];
  auto* out = resp.add_outputs();
  out->set_name(o["name"].GetString());
  out->set_datatype(o["datatype"].GetString());
  for (const auto& d : o["shape"].GetArray()) out->add_shape(d.GetInt64());
  std::string* raw = resp.add_raw_output_contents();
  if (o.HasMember("data")) {
    for (const auto& v : o["data"].GetArray()) {
      const int32_t x = v.GetInt();
      raw->append(reinterpret_cast<const char*>(&x), 4);
    }
  } else {
    *raw = r.body.substr(json_size, o["parameters"]["binary_data_size"].GetUint64());
  }
  return resp;
}

class RestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = ServerProcess::Start(
        {"--boards=sim:1", "--model-control-mode=explicit", "--load-model=verify",
         "--model-repository=" +
             WriteModelRepository({{"verify", R"(
name: "verify" bitstream: "verify"
input { name: "INPUT" datatype: "INT8" dims: [196, 768] }
output { name: "OUTPUT" datatype: "INT32" dims: [1000] }
batching { priority_levels: 2 }
max_images_per_request: 16)"},
                                   {"spare", R"(name: "spare" bitstream: "verify")"}})});
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
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  std::string Url(const std::string& path) { return server_->http_url() + path; }

  static ServerProcess* server_;
  static std::atomic<uint64_t> stamps_;
};
ServerProcess* RestTest::server_ = nullptr;
std::atomic<uint64_t> RestTest::stamps_{0};

TEST_F(RestTest, HealthAndMetadata) {
  EXPECT_EQ(HttpCall("GET", Url("/v2/health/live")).status, 200);
  EXPECT_EQ(HttpCall("GET", Url("/v2/health/ready")).status, 200);
  EXPECT_EQ(HttpCall("GET", Url("/v2/models/verify/ready")).status, 200);
  EXPECT_EQ(HttpCall("GET", Url("/v2/models/verify/versions/1/ready")).status, 200);
  // In the repository, not loaded: not ready; unknown: 404.
  EXPECT_EQ(HttpCall("GET", Url("/v2/models/spare/ready")).status, 400);
  EXPECT_EQ(HttpCall("GET", Url("/v2/models/nope/ready")).status, 404);

  HttpResult meta = HttpCall("GET", Url("/v2"));
  ASSERT_EQ(meta.status, 200) << meta.body;
  rapidjson::Document d = Json(meta.body);
  EXPECT_STREQ(d["name"].GetString(), "hgpipe-serve");
  std::vector<std::string> ext;
  for (const auto& e : d["extensions"].GetArray()) ext.push_back(e.GetString());
  EXPECT_THAT(ext,
              ::testing::IsSupersetOf({"binary_tensor_data", "classification", "model_repository",
                                       "statistics", "model_configuration"}));

  HttpResult model = HttpCall("GET", Url("/v2/models/verify"));
  ASSERT_EQ(model.status, 200) << model.body;
  d = Json(model.body);
  EXPECT_STREQ(d["platform"].GetString(), "hgpipe/verify");
  EXPECT_STREQ(d["inputs"][0]["datatype"].GetString(), "INT8");
  EXPECT_EQ(d["inputs"][0]["shape"][2].GetInt(), 768);

  HttpResult missing = HttpCall("GET", Url("/v2/models/nope"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(ErrorMessage(missing.body), HasSubstr("unknown model 'nope'"));
  HttpResult route = HttpCall("GET", Url("/v3/whatever"));
  EXPECT_EQ(route.status, 404);
  EXPECT_FALSE(ErrorMessage(route.body).empty());
  HttpResult method = HttpCall("POST", Url("/v2/models/verify/config"), "{}");
  EXPECT_EQ(method.status, 405);
  // System shared memory is served (shared_memory_test.cc); registering is
  // off without --allow-client-shm, as in Triton; CUDA's is not served.
  HttpResult shm = HttpCall("GET", Url("/v2/systemsharedmemory/status"));
  EXPECT_EQ(shm.status, 200);
  EXPECT_EQ(shm.body, "[]");
  HttpResult reg = HttpCall("POST", Url("/v2/systemsharedmemory/region/r/register"),
                            R"({"key":"/k","byte_size":16})");
  EXPECT_EQ(reg.status, 501);
  EXPECT_THAT(ErrorMessage(reg.body), HasSubstr("--allow-client-shm"));
  HttpResult cuda = HttpCall("GET", Url("/v2/cudasharedmemory/status"));
  EXPECT_EQ(cuda.status, 501);
  EXPECT_THAT(ErrorMessage(cuda.body), HasSubstr("not supported"));
}

TEST_F(RestTest, ModelConfigIsTritonsMessage) {
  HttpResult r = HttpCall("GET", Url("/v2/models/verify/config"));
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document c = Json(r.body);
  EXPECT_STREQ(c["name"].GetString(), "verify");
  EXPECT_STREQ(c["backend"].GetString(), "hgpipe");
  EXPECT_EQ(c["max_batch_size"].GetInt(), 16);
  EXPECT_STREQ(c["input"][0]["data_type"].GetString(), "TYPE_INT8");
  EXPECT_EQ(c["input"][0]["dims"][0].GetInt(), 196);
  EXPECT_STREQ(c["output"][0]["data_type"].GetString(), "TYPE_INT32");
  EXPECT_EQ(c["dynamic_batching"]["priority_levels"].GetInt(), 2);
  EXPECT_EQ(c["dynamic_batching"]["default_queue_policy"]["max_queue_size"].GetInt(), 4096);

  // The same over gRPC.
  auto client = *clients::InferenceClient::Create(server_->grpc_target());
  auto config = client->ModelConfig("verify");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_batch_size(), 16);
  EXPECT_EQ(config->input(0).data_type(), inference::TYPE_INT8);
  EXPECT_EQ(config->dynamic_batching().priority_levels(), 2u);
  EXPECT_EQ(client->ModelConfig("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RestTest, BinaryInputAndOutputCarryEachImagesDigest) {
  const std::vector<int8_t> images = StampedImages(3, stamps_);
  std::string header_length;
  const std::string body = BinaryInferBody(images, /*json_output=*/false, &header_length);
  HttpResult r = HttpCall("POST", Url("/v2/models/verify/infer"), body,
                          WithHeaders({"Inference-Header-Content-Length: " + header_length,
                                       "Content-Type: application/octet-stream"}));
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
  ASSERT_TRUE(r.headers.count("inference-header-content-length"));
  EXPECT_THAT(r.body.substr(0, 200), HasSubstr(R"("id":"req-7")"));
  EXPECT_TRUE(CheckVerifyResponse(FromRest(r), images).ok());
}

TEST_F(RestTest, JsonInputAndOutputCarryEachImagesDigest) {
  const std::vector<int8_t> images = StampedImages(1, stamps_);
  std::string body = R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,196,768],"data":[)";
  body += absl::StrJoin(images, ",", [](std::string* out, int8_t v) { absl::StrAppend(out, v); });
  body += "]}]}";
  HttpResult r = HttpCall("POST", Url("/v2/models/verify/infer"), body);
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
  EXPECT_EQ(r.headers.count("inference-header-content-length"), 0u);
  EXPECT_TRUE(CheckVerifyResponse(FromRest(r), images).ok());
  // Binary input, JSON output.
  const std::vector<int8_t> more = StampedImages(2, stamps_);
  std::string header_length;
  const std::string more_body = BinaryInferBody(more, /*json_output=*/true, &header_length);
  r = HttpCall("POST", Url("/v2/models/verify/infer"), more_body,
               WithHeaders({"Inference-Header-Content-Length: " + header_length}));
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
  EXPECT_TRUE(CheckVerifyResponse(FromRest(r), more).ok());
}

// As Triton's HTTP client sends with request_compression_algorithm, and as
// curl sends a body from a pipe: the answer is the plain request's.
TEST_F(RestTest, CompressedAndChunkedBodiesAreServed) {
  for (const std::string coding : {"gzip", "deflate"}) {
    const std::vector<int8_t> images = StampedImages(2, stamps_);
    std::string header_length;
    const std::string body = BinaryInferBody(images, /*json_output=*/false, &header_length);
    HttpResult r = HttpCall("POST", Url("/v2/models/verify/infer"), Compress(coding, body),
                            WithHeaders({"Inference-Header-Content-Length: " + header_length,
                                         "Content-Encoding: " + coding}));
    ASSERT_EQ(r.status, 200) << coding << ": " << r.body.substr(0, 300);
    EXPECT_TRUE(CheckVerifyResponse(FromRest(r), images).ok()) << coding;
  }
  for (const bool gzip : {false, true}) {
    const std::vector<int8_t> images = StampedImages(2, stamps_);
    std::string header_length;
    std::string body = BinaryInferBody(images, /*json_output=*/true, &header_length);
    if (gzip) body = Compress("gzip", body);
    const std::string raw = RawExchange(
        server_->http_port(),
        absl::StrCat("POST /v2/models/verify/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Transfer-Encoding: chunked\r\nInference-Header-Content-Length: ",
                     header_length, gzip ? "\r\nContent-Encoding: gzip" : "", "\r\n\r\n",
                     Chunked(body, 10000)));
    ASSERT_THAT(raw, HasSubstr("HTTP/1.1 200")) << raw.substr(0, 500);
    HttpResult r;
    r.body = raw.substr(raw.find("\r\n\r\n") + 4);
    EXPECT_TRUE(CheckVerifyResponse(FromRest(r), images).ok()) << "chunked, gzip " << gzip;
  }
}

TEST_F(RestTest, ClassificationAndPriorityParameters) {
  const std::vector<int8_t> images = StampedImages(2, stamps_);
  std::string header_length;
  // Priority 5 on a two-level model: the default level, as Triton.
  const std::string body = BinaryInferBody(
      images, true, &header_length,
      R"(,"outputs":[{"name":"OUTPUT","parameters":{"classification":3}}],"parameters":{"priority":5})");
  HttpResult r = HttpCall("POST", Url("/v2/models/verify/infer"), body,
                          WithHeaders({"Inference-Header-Content-Length: " + header_length}));
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document d = Json(r.body);
  const auto& out = d["outputs"][0];
  EXPECT_STREQ(out["datatype"].GetString(), "BYTES");
  EXPECT_EQ(out["shape"][0].GetInt(), 2);
  EXPECT_EQ(out["shape"][1].GetInt(), 3);
  ASSERT_EQ(out["data"].Size(), 6u);
  // "score:index", best first.
  EXPECT_THAT(std::string(out["data"][0].GetString()), ::testing::MatchesRegex("-?[0-9]+:[0-9]+"));
}

TEST_F(RestTest, StatisticsCountTheRequestPathOnBothWires) {
  auto client = *clients::InferenceClient::Create(server_->grpc_target());
  auto before = client->ModelStatistics("verify");
  ASSERT_TRUE(before.ok()) << before.status();
  const auto& b = before->model_stats(0);
  // Two REST requests of 2 and 1 images, one gRPC request of 4, one failure.
  for (int n : {2, 1}) {
    std::string header_length;
    const std::string body = BinaryInferBody(StampedImages(n, stamps_), false, &header_length);
    HttpResult r = HttpCall("POST", Url("/v2/models/verify/infer"), body,
                            WithHeaders({"Inference-Header-Content-Length: " + header_length}));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  auto resp = client->Infer(*clients::MakeImageRequest("verify", StampedImages(4, stamps_)));
  ASSERT_TRUE(resp.ok()) << resp.status();
  auto bad = clients::MakeImageRequest("verify", StampedImages(1, stamps_));
  bad->mutable_inputs(0)->set_datatype("UINT8");
  EXPECT_FALSE(client->Infer(*bad).ok());

  HttpResult r = HttpCall("GET", Url("/v2/models/verify/stats"));
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document d = Json(r.body);
  const auto& s = d["model_stats"][0];
  EXPECT_STREQ(s["name"].GetString(), "verify");
  EXPECT_EQ(s["inference_count"].GetUint64() - b.inference_count(), 7u);
  const auto& is = s["inference_stats"];
  EXPECT_EQ(is["success"]["count"].GetUint64() - b.inference_stats().success().count(), 3u);
  EXPECT_EQ(is["fail"]["count"].GetUint64() - b.inference_stats().fail().count(), 1u);
  EXPECT_GT(is["success"]["ns"].GetUint64(), b.inference_stats().success().ns());
  EXPECT_EQ(is["queue"]["count"].GetUint64() - b.inference_stats().queue().count(), 7u);
  EXPECT_EQ(is["compute_infer"]["count"].GetUint64() - b.inference_stats().compute_infer().count(),
            7u);
  EXPECT_GT(is["compute_infer"]["ns"].GetUint64(), b.inference_stats().compute_infer().ns());
  EXPECT_GT(s["last_inference"].GetUint64(), 0u);
  // Runs per size add up to the executions, and their images to the images.
  uint64_t runs = 0, images = 0;
  for (const auto& batch : s["batch_stats"].GetArray()) {
    runs += batch["compute_infer"]["count"].GetUint64();
    images += batch["compute_infer"]["count"].GetUint64() * batch["batch_size"].GetUint64();
    EXPECT_GT(batch["compute_infer"]["ns"].GetUint64(), 0u);
  }
  EXPECT_EQ(runs, s["execution_count"].GetUint64());
  EXPECT_EQ(images, s["inference_count"].GetUint64());
  // gRPC reports the same, and every model without a name.
  auto after = client->ModelStatistics("verify");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->model_stats(0).inference_count(), s["inference_count"].GetUint64());
  auto all = client->ModelStatistics("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->model_stats_size(), 1);
  EXPECT_EQ(HttpCall("GET", Url("/v2/models/stats")).status, 200);
  EXPECT_EQ(HttpCall("GET", Url("/v2/models/nope/stats")).status, 404);
}

TEST_F(RestTest, RepositoryIndexLoadWithConfigAndUnload) {
  HttpResult index = HttpCall("POST", Url("/v2/repository/index"), "");
  ASSERT_EQ(index.status, 200) << index.body;
  rapidjson::Document d = Json(index.body);
  ASSERT_TRUE(d.IsArray());
  ASSERT_EQ(d.Size(), 2u);
  EXPECT_STREQ(d[0]["name"].GetString(), "spare");
  EXPECT_STREQ(d[0]["state"].GetString(), "UNAVAILABLE");
  EXPECT_STREQ(d[1]["state"].GetString(), "READY");
  HttpResult ready_only = HttpCall("POST", Url("/v2/repository/index"), R"({"ready":true})");
  EXPECT_EQ(Json(ready_only.body).Size(), 1u);

  // Load with a Triton config override (as tritonclient.http's load_model).
  HttpResult load = HttpCall(
      "POST", Url("/v2/repository/models/spare/load"),
      R"({"parameters":{"config":"{\"max_batch_size\": 2, \"dynamic_batching\": {\"priority_levels\": 3}}"}})");
  ASSERT_EQ(load.status, 200) << load.body;
  rapidjson::Document c = Json(HttpCall("GET", Url("/v2/models/spare/config")).body);
  EXPECT_EQ(c["max_batch_size"].GetInt(), 2);
  EXPECT_EQ(c["dynamic_batching"]["priority_levels"].GetInt(), 3);
  // Three images exceed the override's max_batch_size.
  std::string header_length;
  const std::string big_body = BinaryInferBody(StampedImages(3, stamps_), false, &header_length);
  HttpResult big = HttpCall("POST", Url("/v2/models/spare/infer"), big_body,
                            WithHeaders({"Inference-Header-Content-Length: " + header_length}));
  EXPECT_EQ(big.status, 400);
  EXPECT_THAT(ErrorMessage(big.body), HasSubstr("a request carries 1 to 2"));
  HttpResult bad_config = HttpCall("POST", Url("/v2/repository/models/spare/load"),
                                   R"({"parameters":{"config":"{\"name\": \"other\"}"}})");
  EXPECT_EQ(bad_config.status, 400);
  EXPECT_THAT(ErrorMessage(bad_config.body), HasSubstr("is not the model being loaded"));

  HttpResult unload = HttpCall("POST", Url("/v2/repository/models/spare/unload"),
                               R"({"parameters":{"unload_dependents":true}})");
  ASSERT_EQ(unload.status, 200) << unload.body;
  EXPECT_EQ(HttpCall("GET", Url("/v2/models/spare/ready")).status, 400);
  EXPECT_EQ(HttpCall("POST", Url("/v2/repository/models/spare/unload"), "").status, 404);
}

// Triton's logging extension: what tritonclient's get_log_settings and
// update_log_settings send, over REST and gRPC, changes what the server
// writes to its log.
TEST_F(RestTest, LogSettingsChangeWhatTheServerLogsOverBothProtocols) {
  HttpResult get = HttpCall("GET", Url("/v2/logging"));
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_EQ(get.body, R"({"log_file":"","log_info":true,"log_warning":true,"log_error":true,)"
                      R"("log_verbose_level":0,"log_format":"default"})");
  // A failed request leaves no line at verbose level 0 ...
  HttpResult quiet =
      HttpCall("POST", Url("/v2/models/verify/infer"), R"({"id":"quiet-1","inputs":[]})");
  EXPECT_EQ(quiet.status, 400);
  HttpResult set = HttpCall("POST", Url("/v2/logging"), R"({"log_verbose_level":1})");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(Json(set.body)["log_verbose_level"].GetUint(), 1u);
  EXPECT_TRUE(Json(set.body)["log_info"].GetBool());
  // ... and one at level 1, naming the request and what was wrong.
  HttpResult loud =
      HttpCall("POST", Url("/v2/models/verify/infer"), R"({"id":"loud-1","inputs":[]})");
  EXPECT_EQ(loud.status, 400);
  // Also one refused while the REST body is read, before the pipeline.
  HttpResult unreadable = HttpCall("POST", Url("/v2/models/verify/infer"),
                                   R"({"id":"loud-2","inputs":[{"name":"INPUT"}]})");
  EXPECT_EQ(unreadable.status, 400);
  for (const auto& [body, message] : std::vector<std::pair<std::string, std::string>>{
           {R"({"log_verbose_level":-1})", "'log_verbose_level': the value must be"},
           {R"({"log_info":"yes"})", "'log_info': expected a boolean"},
           {R"({"log_file":"/tmp/hgpipe.log"})", "cannot be changed over the network"},
           {R"({"log_levels":1})", "unknown log setting 'log_levels'"},
           {"[1]", "the body must be a JSON object"}}) {
    HttpResult bad = HttpCall("POST", Url("/v2/logging"), body);
    EXPECT_EQ(bad.status, 400) << body;
    EXPECT_THAT(ErrorMessage(bad.body), HasSubstr(message)) << body;
  }
  EXPECT_EQ(HttpCall("DELETE", Url("/v2/logging")).status, 405);

  // gRPC: tritonclient sends ints as uint32_param, bools as bool_param.
  auto stub =
      inference::GRPCInferenceService::NewStub(clients::MakeChannel(server_->grpc_target()));
  using Setting = inference::LogSettingsRequest::SettingValue;
  auto log_settings = [&](const std::vector<std::pair<std::string, Setting>>& settings,
                          inference::LogSettingsResponse* resp) {
    inference::LogSettingsRequest req;
    for (const auto& [name, value] : settings) (*req.mutable_settings())[name] = value;
    grpc::ClientContext ctx;
    return stub->LogSettings(&ctx, req, resp);
  };
  Setting zero, iso, one, none;
  zero.set_uint32_param(0);
  iso.set_string_param("ISO8601");
  one.set_uint32_param(1);
  inference::LogSettingsResponse resp;
  grpc::Status s = log_settings({{"log_verbose_level", zero}, {"log_format", iso}}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.settings().at("log_verbose_level").uint32_param(), 0u);
  EXPECT_EQ(resp.settings().at("log_format").string_param(), "ISO8601");
  EXPECT_TRUE(resp.settings().at("log_error").bool_param());
  EXPECT_EQ(resp.settings().size(), 6u);
  HttpResult after_grpc =
      HttpCall("POST", Url("/v2/models/verify/infer"), R"({"id":"quiet-2","inputs":[]})");
  EXPECT_EQ(after_grpc.status, 400);
  s = log_settings({{"log_info", one}}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("'log_info': expected a boolean"));
  // tritonclient sends None as a setting without a value: unchanged.
  s = log_settings({{"log_format", none}}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.settings().at("log_format").string_param(), "ISO8601");
  // hgpipe-client's command for it.
  const ExitResult cli = RunToExit(
      BinDir() + "/hgpipe-client",
      {"--url=" + server_->grpc_target(), "logging", "log_verbose_level=0", "log_warning=true"});
  EXPECT_TRUE(cli.exited && cli.code == 0) << cli.log;
  EXPECT_THAT(cli.log, HasSubstr("log_format \"ISO8601\"\nlog_info true\n"));
  EXPECT_THAT(cli.log, HasSubstr("log_verbose_level 0\nlog_warning true\n"));
  const ExitResult bad_cli = RunToExit(
      BinDir() + "/hgpipe-client", {"--url=" + server_->grpc_target(), "logging", "log_info=1"});
  EXPECT_TRUE(bad_cli.exited && bad_cli.code == 1) << bad_cli.log;
  EXPECT_THAT(bad_cli.log, HasSubstr("INVALID_ARGUMENT"));
  // Back to the suite's settings (null: unchanged).
  HttpResult reset =
      HttpCall("POST", Url("/v2/logging"), R"({"log_format":"default","log_info":null})");
  ASSERT_EQ(reset.status, 200) << reset.body;
  EXPECT_TRUE(Json(reset.body)["log_info"].GetBool());

  const std::string log = server_->Log();
  EXPECT_THAT(log, Not(HasSubstr("quiet-1")));
  EXPECT_THAT(log, Not(HasSubstr("quiet-2")));
  EXPECT_THAT(log, ::testing::ContainsRegex(
                       "request_pipeline.cc:[0-9]+\\] infer verify id 'loud-1': INVALID_ARGUMENT: "
                       "model 'verify': the request has no inputs"));
  EXPECT_THAT(log, ::testing::ContainsRegex(
                       "rest_handler.cc:[0-9]+\\] infer 'verify' id 'loud-2': INVALID_ARGUMENT: "));
}

// Triton's log flags set what LogSettings starts from.
TEST(LogFlagsTest, TheFlagsSetTheSettingsTheServerStartsWith) {
  // (The harness reads the INFO ready line: --log-level stays info.)
  auto server = ServerProcess::Start({"--log-verbose=2", "--log-format=ISO8601", "--boards=sim:1"});
  ASSERT_TRUE(server.ok()) << server.status();
  HttpResult get = HttpCall("GET", (*server)->http_url() + "/v2/logging");
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_EQ(get.body, R"({"log_file":"","log_info":true,"log_warning":true,"log_error":true,)"
                      R"("log_verbose_level":2,"log_format":"ISO8601"})");
  // Level 2: a line for an answered request too.
  auto client = *clients::InferenceClient::Create((*server)->grpc_target());
  inference::ModelInferRequest req =
      *clients::MakeImageRequest("verify", clients::GenerateRandomImages(2, 7));
  req.set_id("fine-1");
  ASSERT_TRUE(client->Infer(req).ok());
  EXPECT_THAT((*server)->Log(),
              ::testing::ContainsRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z I [0-9]+ "
                                       "request_pipeline.cc:[0-9]+\\] infer verify id 'fine-1': "
                                       "2 images answered after"));
  for (const auto& [flag, message] : std::vector<std::pair<std::string, std::string>>{
           {"--log-file=/nonexistent-dir/hgpipe.log",
            "--log-file: cannot open /nonexistent-dir/hgpipe.log: No such file or directory"},
           {"--log-format=xml", "--log-format: 'xml' is not \"default\" or \"ISO8601\""},
           {"--log-verbose=-1", "--log-verbose: -1 is below 0"},
           {"--log-level=debug", "--log-level: 'debug' is not info, warning or error"},
       }) {
    auto bad = ServerProcess::Start({flag}, absl::Seconds(30));
    ASSERT_FALSE(bad.ok()) << flag;
    EXPECT_THAT(bad.status().message(), HasSubstr(message)) << flag;
  }
}

// --log-file: the whole log goes to the file, which LogSettings reports and
// keeps.
TEST(LogFlagsTest, TheLogGoesToTheLogFile) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/hgpipe-log-file-", getpid(), ".log");
  {
    auto server = ServerProcess::Start({"--log-file=" + path, "--log-verbose=1", "--boards=sim:1"});
    ASSERT_TRUE(server.ok()) << server.status();
    const std::string url = (*server)->http_url();
    HttpResult get = HttpCall("GET", url + "/v2/logging");
    ASSERT_EQ(get.status, 200) << get.body;
    EXPECT_THAT(get.body, HasSubstr(absl::StrCat(R"({"log_file":")", path, R"(",)")));
    EXPECT_EQ(HttpCall("POST", url + "/v2/logging", absl::StrCat(R"({"log_file":")", path, R"("})"))
                  .status,
              200);
    HttpResult moved = HttpCall("POST", url + "/v2/logging", R"({"log_file":""})");
    EXPECT_EQ(moved.status, 400);
    EXPECT_THAT(ErrorMessage(moved.body), HasSubstr("see --log-file"));
    EXPECT_EQ(
        HttpCall("POST", url + "/v2/models/verify/infer", R"({"id":"to-file","inputs":[]})").status,
        400);
    const ExitResult stopped = (*server)->Stop(SIGTERM);
    EXPECT_TRUE(stopped.exited && stopped.code == 0) << stopped.log;
  }
  std::ifstream in(path);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(file, HasSubstr("hgpipe-server ready: grpc="));
  EXPECT_THAT(file, HasSubstr("infer verify id 'to-file': INVALID_ARGUMENT"));
  EXPECT_THAT(file, HasSubstr("hgpipe-server: stopped"));
  std::remove(path.c_str());
}

TEST_F(RestTest, GrpcTakesTritonsRepositoryParametersAndSaysWhatItDoesNotServe) {
  auto client = *clients::InferenceClient::Create(server_->grpc_target());
  ASSERT_TRUE(client->LoadModel("spare", absl::ZeroDuration(), R"({"max_batch_size": 5})").ok());
  auto config = client->ModelConfig("spare");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->max_batch_size(), 5);
  // tritonclient's unload_model always sends unload_dependents.
  auto channel = clients::MakeChannel(server_->grpc_target());
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  {
    grpc::ClientContext ctx;
    inference::RepositoryModelUnloadRequest req;
    req.set_model_name("spare");
    (*req.mutable_parameters())["unload_dependents"].set_bool_param(false);
    inference::RepositoryModelUnloadResponse resp;
    grpc::Status s = stub->RepositoryModelUnload(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    inference::RepositoryModelLoadRequest req;
    req.set_model_name("spare");
    (*req.mutable_parameters())["file:1/model.bin"].set_bytes_param("xx");
    inference::RepositoryModelLoadResponse resp;
    grpc::Status s = stub->RepositoryModelLoad(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("override files are not supported"));
  }
  {
    grpc::ClientContext ctx;
    inference::CudaSharedMemoryStatusResponse resp;
    grpc::Status s =
        stub->CudaSharedMemoryStatus(&ctx, inference::CudaSharedMemoryStatusRequest(), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_THAT(s.error_message(), HasSubstr("CUDA shared memory is not supported"));
  }
  auto meta = client->ServerMetadata();
  ASSERT_TRUE(meta.ok());
  EXPECT_THAT(meta->extensions(), ::testing::Contains("model_repository(unload_dependents)"));
  EXPECT_THAT(meta->extensions(), ::testing::Contains("statistics"));
}

}  // namespace
}  // namespace hgpipe::testing
