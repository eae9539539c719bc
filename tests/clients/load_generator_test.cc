#include "clients/load_generator.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace hgpipe::clients {
namespace {

using ::testing::HasSubstr;

google::protobuf::Struct ParseJson(const std::string& json) {
  google::protobuf::Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return s;
}

TEST(PercentileTest, NearestRank) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 0.50), 50);
  EXPECT_EQ(Percentile(v, 0.90), 90);
  EXPECT_EQ(Percentile(v, 0.99), 99);
  EXPECT_EQ(Percentile(v, 1.0), 100);
  EXPECT_EQ(Percentile(v, 0.001), 1);
  EXPECT_EQ(Percentile(std::vector<double>{7}, 0.99), 7);
  EXPECT_EQ(Percentile(std::vector<double>{}, 0.5), 0);
}

TEST(LoadResultToJsonTest, OneParsableObjectWithSettingsAndResults) {
  LoadOptions o;
  o.target = "127.0.0.1:1234";
  o.concurrency = 16;
  o.images_per_request = 8;
  LoadResult r;
  r.platform = "hgpipe/verify";
  r.request_pool = 16;
  r.window_seconds = 10;
  r.requests_ok = 900;
  r.images_ok = 7200;
  r.images_per_second = 720;
  r.requests_per_second = 90;
  r.latency_ms.p50 = 1.5;
  r.latency_ms.p99 = 4.25;
  r.errors["UNAVAILABLE"] = 2;
  r.first_error_message["UNAVAILABLE"] = "board \"sim0\"\nlost";
  const google::protobuf::Struct s = ParseJson(LoadResultToJson(o, r));
  const auto& f = s.fields();
  EXPECT_EQ(f.at("images_per_second").number_value(), 720);
  EXPECT_EQ(f.at("requests_ok").number_value(), 900);
  EXPECT_EQ(f.at("error_count").number_value(), 2);
  EXPECT_EQ(f.at("errors").struct_value().fields().at("UNAVAILABLE").number_value(), 2);
  EXPECT_EQ(f.at("first_error_message").struct_value().fields().at("UNAVAILABLE").string_value(),
            "board \"sim0\"\nlost");
  EXPECT_EQ(f.at("latency_ms").struct_value().fields().at("p99").number_value(), 4.25);
  const auto& settings = f.at("settings").struct_value().fields();
  EXPECT_EQ(settings.at("mode").string_value(), "closed");
  EXPECT_EQ(settings.at("concurrency").number_value(), 16);
  EXPECT_EQ(settings.at("images_per_request").number_value(), 8);
  EXPECT_EQ(settings.at("url").string_value(), "127.0.0.1:1234");
}

TEST(LoadResultToJsonTest, OpenLoopSettings) {
  LoadOptions o;
  o.rate = 250;
  o.arrivals = LoadOptions::Arrivals::kConstant;
  const google::protobuf::Struct s = ParseJson(LoadResultToJson(o, LoadResult()));
  const auto& settings = s.fields().at("settings").struct_value().fields();
  EXPECT_EQ(settings.at("mode").string_value(), "open");
  EXPECT_EQ(settings.at("rate").number_value(), 250);
  EXPECT_EQ(settings.at("arrivals").string_value(), "constant");
}

TEST(LoadResultToJsonTest, GoodputVariantsAndAccuracy) {
  LoadOptions o;
  o.min_accuracy = 0.85;
  o.images_path = "i.gz";
  o.labels_path = "l.gz";
  LoadResult r;
  r.offered = 10;
  r.answered = 8;
  r.within_deadline = 7;
  r.goodput = 0.7;
  r.deadline_ms = 5;
  r.variants["full"] = {.requests = 6, .images = 6, .correct = 5, .declared_top1 = 0.9};
  r.variants["fast"] = {.requests = 2, .images = 2, .correct = 1, .declared_top1 = 0.8};
  r.declared_accuracy = 0.875;
  r.measured_accuracy = 0.75;
  const google::protobuf::Struct s = ParseJson(LoadResultToJson(o, r));
  const auto& f = s.fields();
  EXPECT_EQ(f.at("settings").struct_value().fields().at("min_accuracy").number_value(), 0.85);
  EXPECT_EQ(f.at("settings").struct_value().fields().at("labels").string_value(), "l.gz");
  EXPECT_EQ(f.at("offered").number_value(), 10);
  EXPECT_EQ(f.at("within_deadline").number_value(), 7);
  EXPECT_EQ(f.at("goodput").number_value(), 0.7);
  EXPECT_EQ(f.at("declared_accuracy").number_value(), 0.875);
  EXPECT_EQ(f.at("measured_accuracy").number_value(), 0.75);
  const auto& fast = f.at("variants").struct_value().fields().at("fast").struct_value().fields();
  EXPECT_EQ(fast.at("requests").number_value(), 2);
  EXPECT_EQ(fast.at("share").number_value(), 0.25);
  EXPECT_EQ(fast.at("correct").number_value(), 1);
  EXPECT_EQ(fast.at("accuracy").number_value(), 0.5);
  EXPECT_EQ(fast.at("declared_top1").number_value(), 0.8);
  // Without labels or stated accuracies: null, not a made-up figure.
  const google::protobuf::Struct plain = ParseJson(LoadResultToJson(LoadOptions(), LoadResult()));
  EXPECT_TRUE(plain.fields().at("measured_accuracy").has_null_value());
  EXPECT_TRUE(plain.fields().at("declared_accuracy").has_null_value());
}

TEST(RunLoadTest, RejectsBadOptionsBeforeConnecting) {
  LoadOptions o;
  o.target = "127.0.0.1:1";  // nothing listens; never reached
  o.images_per_request = 0;
  EXPECT_EQ(RunLoad(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.images_per_request = 1;
  o.duration = absl::ZeroDuration();
  EXPECT_EQ(RunLoad(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.duration = absl::Seconds(1);
  o.concurrency = 0;
  EXPECT_EQ(RunLoad(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.concurrency = 1;
  o.min_accuracy = 1.5;
  EXPECT_EQ(RunLoad(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.min_accuracy = 0;
  o.images_path = "images.gz";  // no labels
  EXPECT_EQ(RunLoad(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.labels_path = "labels.gz";
  o.verify = true;
  EXPECT_EQ(RunLoad(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RunLoadTest, AnAbsentServerIsAnError) {
  LoadOptions o;
  o.target = "127.0.0.1:1";
  o.timeout = absl::Seconds(10);
  auto r = RunLoad(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace hgpipe::clients
