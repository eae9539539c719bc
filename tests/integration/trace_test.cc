// Triton's trace extension on the real server: the flags, the settings over
// gRPC (as tritonclient sends them), REST and hgpipe-client, and the trace
// file the sampled requests leave.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "http_client.h"
#include "proto/grpc_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The trace file `path`: a JSON array of [head, timestamps] pairs.
struct Trace {
  std::string model, request_id;
  std::vector<std::string> steps;
  std::vector<int64_t> ns;
};
std::vector<Trace> ReadTraces(const std::string& path) {
  const std::string text = ReadFile(path);
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  std::vector<Trace> traces;
  if (doc.HasParseError() || !doc.IsArray()) {
    ADD_FAILURE() << path << " is not a JSON array: " << text;
    return traces;
  }
  for (rapidjson::SizeType i = 0; i + 1 < doc.Size(); i += 2) {
    Trace t;
    t.model = doc[i]["model_name"].GetString();
    t.request_id = doc[i]["request_id"].GetString();
    EXPECT_EQ(doc[i]["id"].GetUint64(), doc[i + 1]["id"].GetUint64());
    for (const rapidjson::Value& s : doc[i + 1]["timestamps"].GetArray()) {
      t.steps.push_back(s["name"].GetString());
      t.ns.push_back(s["ns"].GetInt64());
    }
    traces.push_back(std::move(t));
  }
  return traces;
}

inference::TraceSettingRequest Settings(
    const std::string& model, const std::vector<std::pair<std::string, std::string>>& settings) {
  inference::TraceSettingRequest req;
  req.set_model_name(model);
  for (const auto& [name, value] : settings) {
    auto* values = (*req.mutable_settings())[name].mutable_value();
    if (!value.empty()) values->Add()->assign(value);  // "": None, as tritonclient sends it
  }
  return req;
}

TEST(TraceTest, SampledRequestsLeaveTritonsTraceFileAndTheSettingsChangeOverBothProtocols) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/hgpipe-trace-", getpid(), ".json");
  auto server =
      ServerProcess::Start({"--boards=sim:1", "--trace-file=" + path, "--trace-level=TIMESTAMPS",
                            "--trace-rate=1", "--trace-log-frequency=1"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = *clients::InferenceClient::Create((*server)->grpc_target());
  const std::string url = (*server)->http_url();

  // One image: every step, in order. The trace is written before the answer
  // is sent, and one trace completes its file.
  inference::ModelInferRequest req =
      *clients::MakeImageRequest("verify", clients::GenerateRandomImages(1, 3));
  req.set_id("traced-1");
  ASSERT_TRUE(client->Infer(req).ok());
  std::vector<Trace> traces = ReadTraces(path + ".0");
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_EQ(traces[0].model, "verify");
  EXPECT_EQ(traces[0].request_id, "traced-1");
  EXPECT_THAT(traces[0].steps,
              ElementsAre("GRPC_WAITREAD_START", "GRPC_WAITREAD_END", "REQUEST_START",
                          "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
                          "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"));
  for (size_t i = 1; i < traces[0].ns.size(); ++i) {
    EXPECT_LE(traces[0].ns[i - 1], traces[0].ns[i]) << traces[0].steps[i];
  }
  // Emulated HG-PIPE takes at least its latency between input and output.
  EXPECT_GT(traces[0].ns[6] - traces[0].ns[5], 100'000);

  // A request refused at once: its start and end only.
  EXPECT_EQ(
      HttpCall("POST", url + "/v2/models/verify/infer", R"({"id":"bad-1","inputs":[]})").status,
      400);
  traces = ReadTraces(path + ".1");
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_EQ(traces[0].request_id, "bad-1");
  EXPECT_THAT(traces[0].steps,
              ElementsAre("HTTP_RECV_START", "HTTP_RECV_END", "REQUEST_START", "REQUEST_END"));

  // gRPC, as tritonclient calls it: the model's settings are the global ones.
  auto stub =
      inference::GRPCInferenceService::NewStub(clients::MakeChannel((*server)->grpc_target()));
  auto call = [&](const inference::TraceSettingRequest& r, inference::TraceSettingResponse* resp) {
    grpc::ClientContext ctx;
    return stub->TraceSetting(&ctx, r, resp);
  };
  inference::TraceSettingResponse resp;
  grpc::Status s = call(Settings("verify", {}), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.settings().size(), 6u);
  EXPECT_THAT(resp.settings().at("trace_level").value(), ElementsAre("TIMESTAMPS"));
  EXPECT_THAT(resp.settings().at("trace_file").value(), ElementsAre(path));
  EXPECT_THAT(resp.settings().at("log_frequency").value(), ElementsAre("1"));
  // verify's own level OFF: its requests are no longer traced.
  s = call(Settings("verify", {{"trace_level", "OFF"}}), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(resp.settings().at("trace_level").value(), ElementsAre("OFF"));
  ASSERT_TRUE(client->Infer(req).ok());
  EXPECT_EQ(ReadFile(path + ".2"), "");
  s = call(Settings("nope", {}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  s = call(Settings("", {{"trace_level", "TENSORS"}}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("TENSORS is not supported"));

  // REST: the global settings, a model's, and what is refused.
  HttpResult global = HttpCall("GET", url + "/v2/trace/setting");
  ASSERT_EQ(global.status, 200) << global.body;
  EXPECT_EQ(global.body, absl::StrCat(R"({"trace_file":")", path,
                                      R"(","trace_level":["TIMESTAMPS"],"trace_rate":"1",)"
                                      R"("trace_count":"-1","log_frequency":"1",)"
                                      R"("trace_mode":"triton"})"));
  HttpResult model = HttpCall("GET", url + "/v2/models/verify/trace/setting");
  ASSERT_EQ(model.status, 200) << model.body;
  EXPECT_THAT(model.body, HasSubstr(R"("trace_level":["OFF"])"));
  // Cleared for the model (null): the global level again; and two traces
  // at most from now on.
  HttpResult set = HttpCall("POST", url + "/v2/models/verify/versions/1/trace/setting",
                            R"({"trace_level":null,"trace_count":"2"})");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_THAT(set.body, HasSubstr(R"("trace_level":["TIMESTAMPS"],"trace_rate":"1",)"
                                  R"("trace_count":"2")"));
  for (const auto& [body, message] : std::vector<std::pair<std::string, std::string>>{
           {R"({"trace_rate":"0"})", "trace_rate: '0' is not an integer"},
           {R"({"trace_file":"/etc/motd"})", "fixed at start-up"},
           {R"({"trace_rate":7})", "must be a string, an array of strings or null"},
           {R"({"sample":"1"})", "unknown trace setting 'sample'"},
           {"[]", "the body must be a JSON object"}}) {
    HttpResult bad = HttpCall("POST", url + "/v2/trace/setting", body);
    EXPECT_EQ(bad.status, 400) << body;
    EXPECT_THAT(ErrorMessage(bad.body), HasSubstr(message)) << body;
  }
  EXPECT_EQ(HttpCall("GET", url + "/v2/models/nope/trace/setting").status, 404);
  EXPECT_EQ(HttpCall("DELETE", url + "/v2/trace/setting").status, 405);
  EXPECT_EQ(HttpCall("GET", url + "/v2/trace/settings").status, 404);

  // hgpipe-client's command: three requests, two traced, the count at 0.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->Infer(req).ok());
  EXPECT_EQ(ReadTraces(path + ".2").size(), 1u);
  EXPECT_EQ(ReadTraces(path + ".3").size(), 1u);
  EXPECT_EQ(ReadFile(path + ".4"), "");
  const ExitResult cli =
      RunToExit(BinDir() + "/hgpipe-client", {"--url=" + (*server)->grpc_target(), "trace",
                                              "verify", "trace_rate=5", "trace_level=TIMESTAMPS"});
  EXPECT_TRUE(cli.exited && cli.code == 0) << cli.log;
  EXPECT_THAT(cli.log, HasSubstr("trace_count 0\n"));
  EXPECT_THAT(cli.log, HasSubstr("trace_level TIMESTAMPS\ntrace_mode triton\ntrace_rate 5\n"));

  auto metadata = client->ServerMetadata();
  ASSERT_TRUE(metadata.ok());
  EXPECT_THAT(metadata->extensions(), ::testing::Contains("trace"));
  const ExitResult stopped = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(stopped.exited && stopped.code == 0) << stopped.log;
  for (int i = 0; i < 4; ++i) std::remove(absl::StrCat(path, ".", i).c_str());
}

// With log_frequency 0 the one file is complete when the server stops; bad
// trace flags stop the start.
TEST(TraceTest, TheTraceFileIsCompleteWhenTheServerStopsAndBadFlagsStopTheStart) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/hgpipe-trace-stop-", getpid(), ".json");
  {
    auto server = ServerProcess::Start(
        {"--boards=sim:1", "--trace-file=" + path, "--trace-level=TIMESTAMPS", "--trace-rate=2"});
    ASSERT_TRUE(server.ok()) << server.status();
    auto client = *clients::InferenceClient::Create((*server)->grpc_target());
    for (int i = 0; i < 6; ++i) {
      inference::ModelInferRequest req =
          *clients::MakeImageRequest("verify", clients::GenerateRandomImages(2, i));
      req.set_id(absl::StrCat("r", i));
      ASSERT_TRUE(client->Infer(req).ok());
    }
    const ExitResult stopped = (*server)->Stop(SIGTERM);
    EXPECT_TRUE(stopped.exited && stopped.code == 0) << stopped.log;
  }
  std::vector<Trace> traces = ReadTraces(path);
  ASSERT_EQ(traces.size(), 3u);  // one in two
  EXPECT_EQ(traces[0].request_id, "r1");
  EXPECT_EQ(traces[2].request_id, "r5");
  EXPECT_EQ(traces[2].steps.size(), 9u);
  std::remove(path.c_str());

  for (const auto& [flags, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--trace-level=TIMESTAMPS"}, "--trace-level TIMESTAMPS needs --trace-file"},
           {{"--trace-rate=0"}, "--trace-rate: 0 is not in [1, 2^32)"},
           {{"--trace-level=TENSORS", "--trace-file=/tmp/t.json"}, "TENSORS is not supported"},
       }) {
    auto bad = ServerProcess::Start(flags, absl::Seconds(30));
    ASSERT_FALSE(bad.ok()) << flags[0];
    EXPECT_THAT(bad.status().message(), HasSubstr(message)) << flags[0];
  }
}

}  // namespace
}  // namespace hgpipe::testing
