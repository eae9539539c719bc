#include "server/log_control.h"

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"

#include "gmock/gmock.h"
#include "glog/logging.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(LogSettingsTest, DescribesAllSixAsTritonNamesThem) {
  LogSettings s;
  s.warning = false;
  s.verbose_level = 3;
  s.format = LogFormat::kIso8601;
  const NamedLogSettings d = DescribeLogSettings(s);
  const NamedLogSettings want = {
      {"log_file", std::string()}, {"log_info", true},
      {"log_warning", false},      {"log_error", true},
      {"log_verbose_level", 3u},   {"log_format", std::string("ISO8601")}};
  EXPECT_EQ(d, want);
}

TEST(LogSettingsTest, AppliesOnlyTheNamedSettings) {
  auto s = ApplyLogSettings(LogSettings{}, {{"log_verbose_level", 2u}, {"log_info", false}});
  ASSERT_TRUE(s.ok()) << s.status();
  LogSettings want;
  want.verbose_level = 2;
  want.info = false;
  EXPECT_EQ(*s, want);
  auto f = ApplyLogSettings(*s, {{"log_format", std::string("ISO8601")},
                                 {"log_file", std::string()},
                                 {"log_info", std::monostate()}});
  ASSERT_TRUE(f.ok()) << f.status();
  want.format = LogFormat::kIso8601;
  EXPECT_EQ(*f, want);
}

TEST(LogSettingsTest, RefusesWholeUpdatesNamingTheSetting) {
  const LogSettings before;
  struct Case {
    NamedLogSettings update;
    std::string message;
  };
  const Case cases[] = {
      {{{"log_info", false}, {"log_verbose", 1u}}, "unknown log setting 'log_verbose'"},
      {{{"log_levels", std::monostate()}}, "unknown log setting 'log_levels'"},
      {{{"log_info", 1u}}, "log setting 'log_info': expected a boolean"},
      {{{"log_verbose_level", true}}, "'log_verbose_level': expected an unsigned integer"},
      {{{"log_format", std::string("json")}}, "log_format: 'json' is not"},
      {{{"log_format", false}}, "'log_format': expected a string"},
      {{{"log_file", std::string("/etc/passwd")}}, "cannot be changed over the network"},
      {{{"log_file", std::string("/etc/passwd")}}, "(the server writes its log to stderr;"},
  };
  for (const Case& c : cases) {
    auto s = ApplyLogSettings(before, c.update);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.status().message(), HasSubstr(c.message));
  }
}

TEST(LogSettingsTest, TheLogFileIsReportedAndOnlyItselfAccepted) {
  LogSettings to_file;
  to_file.file = "/var/log/hgpipe.log";
  const NamedLogSettings d = DescribeLogSettings(to_file);
  EXPECT_EQ(d.front(), (std::pair<std::string, LogSettingValue>("log_file", to_file.file)));
  EXPECT_TRUE(ApplyLogSettings(to_file, {{"log_file", to_file.file}}).ok());
  auto moved = ApplyLogSettings(to_file, {{"log_file", std::string()}});
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(moved.status().message(),
              HasSubstr("writes its log to '/var/log/hgpipe.log'; see --log-file"));
}

TEST(LogSettingsTest, TheFlagsGiveTheSettingsTheServerStartsWith) {
  EXPECT_EQ(*LogSettingsFromFlags("info", 0, "default", ""), LogSettings{});
  auto w = LogSettingsFromFlags("warning", 2, "ISO8601", "/var/log/hgpipe.log");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE(w->info);
  EXPECT_TRUE(w->warning && w->error);
  EXPECT_EQ(w->verbose_level, 2u);
  EXPECT_EQ(w->format, LogFormat::kIso8601);
  EXPECT_EQ(w->file, "/var/log/hgpipe.log");
  auto e = LogSettingsFromFlags("error", 0, "default", "");
  EXPECT_FALSE(e->info || e->warning);
  EXPECT_TRUE(e->error);
  for (const auto& [settings, message] :
       std::vector<std::pair<absl::StatusOr<LogSettings>, std::string>>{
           {LogSettingsFromFlags("debug", 0, "default", ""),
            "--log-level: 'debug' is not info, warning or error"},
           {LogSettingsFromFlags("info", -1, "default", ""), "--log-verbose: -1 is below 0"},
           {LogSettingsFromFlags("info", 0, "xml", ""),
            "--log-format: 'xml' is not \"default\" or \"ISO8601\""}}) {
    EXPECT_EQ(settings.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(settings.status().message(), message);
  }
}

// glog's output through a LogControl into a temporary file.
class LogControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = std::tmpfile();
    ASSERT_NE(out_, nullptr);
  }
  void TearDown() override { std::fclose(out_); }

  std::string Written() {
    std::fflush(out_);
    std::string text;
    std::rewind(out_);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), out_)) > 0) text.append(buf, n);
    return text;
  }

  std::FILE* out_ = nullptr;
};

TEST_F(LogControlTest, WritesTheSeveritiesTheSettingsLetThrough) {
  LogControl log(*LogSettingsFromFlags("warning", 0, "default", ""), out_);
  LOG(INFO) << "info line one";
  LOG(WARNING) << "warning line one";
  LOG(ERROR) << "error line one";
  ASSERT_TRUE(log.Update({{"log_info", true}, {"log_error", false}}).ok());
  LOG(INFO) << "info line two";
  LOG(ERROR) << "error line two";
  const std::string text = Written();
  EXPECT_THAT(text, Not(HasSubstr("info line one")));
  EXPECT_THAT(text, HasSubstr("warning line one"));
  EXPECT_THAT(text, HasSubstr("error line one"));
  EXPECT_THAT(text, HasSubstr("info line two"));
  EXPECT_THAT(text, Not(HasSubstr("error line two")));
  // glog's own prefix: severity letter, date, time, thread, file:line.
  EXPECT_THAT(text,
              ::testing::ContainsRegex("W[0-9]+ [0-9:.]+ +[0-9]+ log_control_test.cc:[0-9]+\\] "
                                       "warning line one"));
}

TEST_F(LogControlTest, InferAnswerLinesFollowTheVerboseLevel) {
  LogControl log(LogSettings{}, out_);
  const absl::Status bad = absl::InvalidArgumentError("no inputs");
  EXPECT_FALSE(VerboseLogOn(1));
  LogInferAnswer("m", "failed-at-0", 0, bad, absl::Microseconds(5));
  ASSERT_TRUE(log.Update({{"log_verbose_level", 1u}}).ok());
  EXPECT_TRUE(VerboseLogOn(1));
  EXPECT_FALSE(VerboseLogOn(2));
  LogInferAnswer("m", "failed-at-1", 0, bad, absl::Microseconds(5));
  LogInferAnswer("m", "answered-at-1", 3, absl::OkStatus(), absl::Microseconds(5));
  ASSERT_TRUE(log.Update({{"log_verbose_level", 2u}}).ok());
  LogInferAnswer("m", "answered-at-2", 3, absl::OkStatus(), absl::Microseconds(5));
  // Verbose lines are INFO lines: off with INFO.
  ASSERT_TRUE(log.Update({{"log_info", false}}).ok());
  LogInferAnswer("m", "failed-without-info", 0, bad, absl::Microseconds(5));
  const std::string text = Written();
  EXPECT_THAT(text, Not(HasSubstr("failed-at-0")));
  // The caller's file and line, not log_control.cc's.
  EXPECT_THAT(text,
              ::testing::ContainsRegex("log_control_test.cc:[0-9]+\\] infer m id 'failed-at-1': "
                                       "INVALID_ARGUMENT: no inputs after 5us\n"));
  EXPECT_THAT(text, Not(HasSubstr("answered-at-1")));
  EXPECT_THAT(text, HasSubstr("infer m id 'answered-at-2': 3 images answered after 5us"));
  EXPECT_THAT(text, Not(HasSubstr("failed-without-info")));
  EXPECT_EQ(log.Get().verbose_level, 2u);
}

TEST_F(LogControlTest, Iso8601LinesAreUtcToTheSecond) {
  LogControl log(LogSettings{}, out_);
  ASSERT_TRUE(log.Update({{"log_format", std::string("ISO8601")}}).ok());
  LOG(WARNING) << "a dated line";
  EXPECT_THAT(Written(),
              ::testing::ContainsRegex("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                                       "[0-9]{2}Z W [0-9]+ log_control_test.cc:[0-9]+\\] "
                                       "a dated line\n$"));
}

TEST_F(LogControlTest, AFailedUpdateChangesNothing) {
  LogControl log(LogSettings{}, out_);
  auto s = log.Update({{"log_verbose_level", 4u}, {"log_format", std::string("xml")}});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log.Get(), LogSettings{});
  EXPECT_FALSE(VerboseLogOn(1));
}

TEST_F(LogControlTest, LinesAndUpdatesFromManyThreadsStayWhole) {
  LogControl log(LogSettings{}, out_);
  constexpr int kThreads = 4, kLines = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < kLines; ++i) {
        LOG(WARNING) << "thread " << t << " line " << i << " end";
        LogInferAnswer("verbose", "", 0, absl::InternalError("x"), absl::ZeroDuration());
        if (i % 50 == 0) {
          ASSERT_TRUE(log.Update({{"log_verbose_level", static_cast<uint32_t>(i % 100 == 0)},
                                  {"log_format", std::string(t % 2 ? "ISO8601" : "default")}})
                          .ok());
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const std::string text = Written();
  // Every warning line is written once, whole, on its own line.
  int lines = 0;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (l.empty() || l.find("verbose") != absl::string_view::npos) continue;
    EXPECT_THAT(std::string(l), ::testing::ContainsRegex("\\] thread [0-9] line [0-9]+ end$"));
    ++lines;
  }
  EXPECT_EQ(lines, kThreads * kLines);
}

}  // namespace
}  // namespace hgpipe::server
