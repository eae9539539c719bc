#include "server/trace_control.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace hgpipe::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(absl::string_view name) {
  return absl::StrCat(::testing::TempDir(), "/hgpipe-trace-", getpid(), "-", name);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Settings by name, each as its values joined by ','.
std::map<std::string, std::string> ByName(const NamedTraceSettings& s) {
  std::map<std::string, std::string> out;
  for (const auto& [name, values] : s) {
    std::string joined;
    for (const std::string& v : values.value_or(std::vector<std::string>())) {
      absl::StrAppend(&joined, joined.empty() ? "" : ",", v);
    }
    out[name] = joined;
  }
  return out;
}

TraceSettingValue V(std::string v) { return std::vector<std::string>{std::move(v)}; }

TraceSettings Initial(std::string file) {
  TraceSettings s;
  s.file = std::move(file);
  s.timestamps = true;
  s.rate = 1;
  return s;
}

TEST(TraceSettingsTest, TheFlagsGiveTheSettingsTheServerStartsWith) {
  absl::StatusOr<TraceSettings> s = TraceSettingsFromFlags("/tmp/t.json", "TIMESTAMPS", 10, 5, 2);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->timestamps);
  EXPECT_EQ(s->rate, 10u);
  EXPECT_EQ(s->count, 5);
  EXPECT_EQ(s->log_frequency, 2u);
  EXPECT_EQ(s->file, "/tmp/t.json");
  EXPECT_TRUE(TraceSettingsFromFlags("", "OFF", 1000, -1, 0).ok());
  for (const auto& [status, message] : std::vector<std::pair<absl::Status, std::string>>{
           {TraceSettingsFromFlags("f", "TENSORS", 1, -1, 0).status(), "--trace-level: "},
           {TraceSettingsFromFlags("f", "ALL", 1, -1, 0).status(), "'ALL' is not OFF"},
           {TraceSettingsFromFlags("f", "OFF", 0, -1, 0).status(), "--trace-rate: 0"},
           {TraceSettingsFromFlags("f", "OFF", 1, -2, 0).status(), "--trace-count: -2"},
           {TraceSettingsFromFlags("f", "OFF", 1, -1, -1).status(), "--trace-log-frequency: -1"},
           {TraceSettingsFromFlags("", "TIMESTAMPS", 1, -1, 0).status(), "needs --trace-file"},
       }) {
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << message;
    EXPECT_THAT(status.message(), HasSubstr(message));
  }
}

// Triton's own scenario (its L0_trace endpoint test): a model's settings
// are the global ones until set; a cleared setting goes back to the global
// value for a model, to the start-up value globally.
TEST(TraceSettingsTest, ModelSettingsFollowTheGlobalOnesUntilSetAndClearAsTritonDoes) {
  TraceControl trace(Initial(TempPath("unused.json")));
  const std::map<std::string, std::string> start = {{"trace_file", TempPath("unused.json")},
                                                    {"trace_level", "TIMESTAMPS"},
                                                    {"trace_rate", "1"},
                                                    {"trace_count", "-1"},
                                                    {"log_frequency", "0"},
                                                    {"trace_mode", "triton"}};
  EXPECT_EQ(ByName(trace.Get("")), start);
  EXPECT_EQ(ByName(trace.Get("simple")), start);

  ASSERT_TRUE(trace.Update("simple", {{"trace_rate", V("12")}}).ok());
  ASSERT_TRUE(
      trace
          .Update("",
                  {{"trace_rate", V("56")}, {"trace_count", V("78")}, {"trace_level", V("OFF")}})
          .ok());
  std::map<std::string, std::string> model = ByName(trace.Get("simple"));
  EXPECT_EQ(model["trace_rate"], "12");    // its own
  EXPECT_EQ(model["trace_count"], "78");   // the global one
  EXPECT_EQ(model["trace_level"], "OFF");  // likewise

  // Cleared globally: back to the start-up values, and the model follows.
  absl::StatusOr<NamedTraceSettings> global =
      trace.Update("", {{"trace_rate", std::nullopt}, {"trace_count", std::nullopt}});
  ASSERT_TRUE(global.ok()) << global.status();
  std::map<std::string, std::string> g = ByName(*global);
  EXPECT_EQ(g["trace_rate"], "1");
  EXPECT_EQ(g["trace_count"], "-1");
  EXPECT_EQ(g["trace_level"], "OFF");
  model = ByName(trace.Get("simple"));
  EXPECT_EQ(model["trace_rate"], "12");
  EXPECT_EQ(model["trace_count"], "-1");

  // Cleared for the model (an empty list, as gRPC carries None): global.
  absl::StatusOr<NamedTraceSettings> cleared = trace.Update(
      "simple", {{"trace_rate", std::vector<std::string>{}}, {"trace_level", std::nullopt}});
  ASSERT_TRUE(cleared.ok()) << cleared.status();
  EXPECT_EQ(ByName(*cleared)["trace_rate"], "1");
  EXPECT_EQ(ByName(*cleared)["trace_level"], "OFF");
  // A model's own level outlives a global change.
  ASSERT_TRUE(trace.Update("simple", {{"trace_level", V("TIMESTAMPS")}}).ok());
  ASSERT_TRUE(trace.Update("", {{"trace_level", V("OFF")}}).ok());
  EXPECT_EQ(ByName(trace.Get("simple"))["trace_level"], "TIMESTAMPS");
  EXPECT_EQ(ByName(trace.Get(""))["trace_level"], "OFF");
}

TEST(TraceSettingsTest, BadUpdatesAreRefusedWholeAndNameTheSetting) {
  TraceControl trace(Initial(TempPath("bad.json")));
  TraceControl no_file(TraceSettings{});
  const std::map<std::string, std::string> before = ByName(trace.Get(""));
  struct Case {
    TraceControl* control;
    std::string model;
    NamedTraceSettings update;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {&trace, "", {{"trace_rate", V("5")}, {"trace_level", V("TENSORS")}}, "TENSORS"},
           {&trace, "", {{"trace_rate", V("5")}, {"colour", V("blue")}}, "unknown trace setting"},
           {&trace, "", {{"trace_rate", V("0")}}, "trace_rate: '0' is not an integer in [1, "},
           {&trace, "", {{"trace_rate", V("1e3")}}, "trace_rate: '1e3'"},
           {&trace, "", {{"trace_count", V("-2")}}, "trace_count: '-2'"},
           {&trace,
            "",
            {{"trace_rate", std::vector<std::string>{"1", "2"}}},
            "trace_rate: takes one value, not 2"},
           {&trace, "", {{"trace_file", V("/etc/passwd")}}, "fixed at start-up"},
           {&trace, "", {{"trace_mode", V("opentelemetry")}}, "only \"triton\""},
           {&trace, "m", {{"log_frequency", V("3")}}, "log_frequency: is global"},
           {&no_file, "", {{"trace_level", V("TIMESTAMPS")}}, "needs a trace file"},
           {&no_file, "m", {{"trace_level", V("TIMESTAMPS")}}, "needs a trace file"},
       }) {
    absl::StatusOr<NamedTraceSettings> s = c.control->Update(c.model, c.update);
    ASSERT_FALSE(s.ok()) << c.message;
    EXPECT_TRUE(absl::IsInvalidArgument(s.status()));
    EXPECT_THAT(s.status().message(), HasSubstr(c.message));
  }
  EXPECT_EQ(ByName(trace.Get("")), before);
  EXPECT_EQ(ByName(trace.Get("m")), before);
  // What Triton's tearDown sends a model: every setting cleared, fine.
  EXPECT_TRUE(trace
                  .Update("m", {{"trace_file", std::nullopt},
                                {"trace_level", std::nullopt},
                                {"trace_rate", std::nullopt},
                                {"trace_count", std::nullopt},
                                {"log_frequency", std::nullopt}})
                  .ok());
  EXPECT_TRUE(trace.Update("", {{"trace_file", V(TempPath("bad.json"))}}).ok());
}

TEST(TraceControlTest, SamplesOneRequestInRateAndStopsAfterCount) {
  TraceSettings s = Initial(TempPath("sample.json"));
  s.rate = 3;
  s.count = 2;
  TraceControl trace(s);
  std::vector<int> sampled;
  for (int i = 1; i <= 12; ++i) {
    if (trace.Sample("a", "", TraceWire::kGrpc) != nullptr) sampled.push_back(i);
  }
  EXPECT_THAT(sampled, ElementsAre(3, 6));
  EXPECT_EQ(ByName(trace.Get(""))["trace_count"], "0");
  // A model with its own rate and count: counted apart from the others.
  ASSERT_TRUE(trace.Update("b", {{"trace_rate", V("2")}, {"trace_count", V("-1")}}).ok());
  sampled.clear();
  for (int i = 1; i <= 6; ++i) {
    if (trace.Sample("b", "", TraceWire::kGrpc) != nullptr) sampled.push_back(i);
    EXPECT_EQ(trace.Sample("a", "", TraceWire::kGrpc), nullptr);
  }
  EXPECT_THAT(sampled, ElementsAre(2, 4, 6));
  // Off: nothing sampled.
  ASSERT_TRUE(trace.Update("b", {{"trace_level", V("OFF")}}).ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(trace.Sample("b", "", TraceWire::kGrpc), nullptr);
}

// The steps of one trace in the file, by name.
std::vector<std::string> StepNames(const rapidjson::Value& timestamps) {
  std::vector<std::string> names;
  for (const rapidjson::Value& t : timestamps.GetArray()) names.push_back(t["name"].GetString());
  return names;
}

TEST(TraceControlTest, WritesTritonsJsonArraysLogFrequencyTracesPerFile) {
  const std::string path = TempPath("files.json");
  TraceSettings s = Initial(path);
  s.log_frequency = 2;
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  {
    TraceControl trace(s);
    for (int i = 0; i < 5; ++i) {
      std::unique_ptr<RequestTrace> t =
          trace.Sample("verify", absl::StrCat("req-", i), TraceWire::kGrpc);
      ASSERT_NE(t, nullptr);
      t->Mark(TraceStep::kRequestStart, t0);
      t->Mark(TraceStep::kQueueStart, t0 + absl::Microseconds(10));
      t->Mark(TraceStep::kRequestEnd, t0 + absl::Microseconds(90));
      trace.Write(*t);
    }
    // Two files complete; the fifth trace's file completes at the end.
    EXPECT_FALSE(ReadFile(path + ".1").empty());
  }
  uint64_t id = 1;
  for (int file = 0; file < 3; ++file) {
    const std::string text = ReadFile(absl::StrCat(path, ".", file));
    rapidjson::Document doc;
    doc.Parse(text.c_str());
    ASSERT_FALSE(doc.HasParseError()) << file << ": " << text;
    ASSERT_TRUE(doc.IsArray());
    ASSERT_EQ(doc.Size(), file < 2 ? 4u : 2u) << text;
    for (rapidjson::SizeType i = 0; i < doc.Size(); i += 2, ++id) {
      const rapidjson::Value& head = doc[i];
      EXPECT_EQ(head["id"].GetUint64(), id);
      EXPECT_STREQ(head["model_name"].GetString(), "verify");
      EXPECT_EQ(head["model_version"].GetInt(), 1);
      EXPECT_EQ(head["request_id"].GetString(), absl::StrCat("req-", id - 1));
      const rapidjson::Value& steps = doc[i + 1];
      EXPECT_EQ(steps["id"].GetUint64(), id);
      EXPECT_THAT(StepNames(steps["timestamps"]),
                  ElementsAre("REQUEST_START", "QUEUE_START", "REQUEST_END"));
      EXPECT_EQ(steps["timestamps"][1]["ns"].GetInt64(),
                absl::ToUnixNanos(t0 + absl::Microseconds(10)));
    }
    std::remove(absl::StrCat(path, ".", file).c_str());
  }
  EXPECT_TRUE(ReadFile(path + ".3").empty());

  // log_frequency 0: one file, the path itself, complete at the end.
  s.log_frequency = 0;
  {
    TraceControl trace(s);
    for (int i = 0; i < 3; ++i)
      trace.Write(*trace.Sample("m", std::string(5000, 'x'), TraceWire::kGrpc));
  }
  rapidjson::Document doc;
  const std::string text = ReadFile(path);
  doc.Parse(text.c_str());
  ASSERT_FALSE(doc.HasParseError()) << text;
  ASSERT_EQ(doc.Size(), 6u);
  // A long request id is cut.
  EXPECT_EQ(doc[0]["request_id"].GetStringLength(), 1024u);
  std::remove(path.c_str());
}

// A change of log_frequency completes the file being written; later
// traces start the next numbered file.
TEST(TraceControlTest, ALogFrequencyChangeCompletesTheFileAndMovesToTheNextNumberedOne) {
  const std::string path = TempPath("change.json");
  TraceSettings s = Initial(path);  // log_frequency 0: the path itself
  {
    TraceControl trace(s);
    trace.Write(*trace.Sample("m", "first", TraceWire::kGrpc));
    ASSERT_TRUE(trace.Update("", {{"log_frequency", V("5")}}).ok());
    // Complete now, with its one trace.
    rapidjson::Document first;
    first.Parse(ReadFile(path).c_str());
    ASSERT_FALSE(first.HasParseError()) << ReadFile(path);
    EXPECT_EQ(first.Size(), 2u);
    trace.Write(*trace.Sample("m", "second", TraceWire::kGrpc));
  }
  rapidjson::Document second;
  second.Parse(ReadFile(path + ".0").c_str());
  ASSERT_FALSE(second.HasParseError()) << ReadFile(path + ".0");
  ASSERT_EQ(second.Size(), 2u);
  EXPECT_STREQ(second[0]["request_id"].GetString(), "second");
  std::remove(path.c_str());
  std::remove((path + ".0").c_str());
}

TEST(RequestTraceTest, StartsKeepTheEarliestTimeAndEndsTheLatestAcrossThreads) {
  RequestTrace trace(1, "m", "", TraceWire::kHttp);
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 200; ++i) {
        const absl::Time t = t0 + absl::Nanoseconds((i * 7 + k * 13) % 1000);
        trace.Mark(TraceStep::kReceived, t);
        trace.Mark(TraceStep::kComputeStart, t);
        trace.Mark(TraceStep::kComputeEnd, t);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  rapidjson::Document doc;
  doc.Parse(("[" + trace.ToJson() + "]").c_str());
  ASSERT_FALSE(doc.HasParseError());
  const rapidjson::Value& steps = doc[1]["timestamps"];
  // The front end's pair, named by its wire, at one time.
  EXPECT_THAT(StepNames(steps),
              ElementsAre("HTTP_RECV_START", "HTTP_RECV_END", "COMPUTE_START", "COMPUTE_END"));
  EXPECT_EQ(steps[0]["ns"].GetInt64(), absl::ToUnixNanos(t0));
  EXPECT_EQ(steps[1]["ns"].GetInt64(), absl::ToUnixNanos(t0));
  EXPECT_EQ(steps[2]["ns"].GetInt64(), absl::ToUnixNanos(t0));
  EXPECT_EQ(steps[3]["ns"].GetInt64(), absl::ToUnixNanos(t0) + 999);
}

// For TSan: requests sampled and written while the settings change.
TEST(TraceControlTest, SamplingWritingAndUpdatingAtOnce) {
  const std::string path = TempPath("threads.json");
  TraceSettings s = Initial(path);
  s.log_frequency = 50;
  {
    TraceControl trace(s);
    std::vector<std::thread> threads;
    for (int k = 0; k < 3; ++k) {
      threads.emplace_back([&, k] {
        for (int i = 0; i < 300; ++i) {
          std::unique_ptr<RequestTrace> t = trace.Sample(k == 0 ? "a" : "b", "", TraceWire::kGrpc);
          if (t == nullptr) continue;
          t->Mark(TraceStep::kRequestStart);
          t->Mark(TraceStep::kRequestEnd);
          trace.Write(*t);
        }
      });
    }
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        ASSERT_TRUE(trace.Update("a", {{"trace_rate", V(absl::StrCat(1 + i % 3))}}).ok());
        ASSERT_TRUE(trace.Update("", {{"log_frequency", V(absl::StrCat(40 + i % 20))}}).ok());
      }
    });
    for (std::thread& t : threads) t.join();
  }
  // Every file written is a whole JSON array.
  for (int file = 0;; ++file) {
    const std::string name = absl::StrCat(path, ".", file);
    const std::string text = ReadFile(name);
    if (text.empty()) {
      EXPECT_GT(file, 0);
      break;
    }
    rapidjson::Document doc;
    doc.Parse(text.c_str());
    EXPECT_FALSE(doc.HasParseError()) << name;
    std::remove(name.c_str());
  }
}

}  // namespace
}  // namespace hgpipe::server
