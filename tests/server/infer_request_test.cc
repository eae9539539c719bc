#include "server/infer_request.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;

config::ModelConfig Model() {
  config::ModelConfig c;
  c.set_name("tiny");
  c.mutable_input()->set_name("INPUT");
  c.mutable_input()->set_datatype("INT8");
  c.mutable_input()->add_dims(4);
  c.mutable_input()->add_dims(6);
  c.mutable_output()->set_name("OUTPUT");
  c.mutable_output()->add_dims(10);
  c.set_max_images_per_request(3);
  return c;
}

inference::ModelInferRequest Request(int64_t n) {
  inference::ModelInferRequest r;
  r.set_model_name("tiny");
  auto* in = r.add_inputs();
  in->set_name("INPUT");
  in->set_datatype("INT8");
  in->add_shape(n);
  in->add_shape(4);
  in->add_shape(6);
  std::string raw(n * 24, '\0');
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<char>(i);
  r.add_raw_input_contents(raw);
  return r;
}

void ExpectBad(const inference::ModelInferRequest& r, const std::string& what) {
  auto p = PrepareInput(r, Model());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << what;
  EXPECT_THAT(p.status().message(), HasSubstr(what));
  EXPECT_THAT(p.status().message(), HasSubstr("model 'tiny'"));
}

TEST(PrepareInputTest, RawContentsArePointedToNotCopied) {
  const auto r = Request(2);
  auto p = PrepareInput(r, Model());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->n_images, 2u);
  EXPECT_EQ(reinterpret_cast<const char*>(p->images), r.raw_input_contents(0).data());
  EXPECT_EQ(p->converted, nullptr);
}

TEST(PrepareInputTest, TypedIntContentsAreConverted) {
  auto r = Request(1);
  r.clear_raw_input_contents();
  for (int i = 0; i < 24; ++i) r.mutable_inputs(0)->mutable_contents()->add_int_contents(i - 12);
  auto p = PrepareInput(r, Model());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_NE(p->converted, nullptr);
  EXPECT_EQ(p->images[0], -12);
  EXPECT_EQ(p->images[23], 11);
}

TEST(PrepareInputTest, EachBadRequestSaysWhatIsWrong) {
  auto r = Request(1);
  r.clear_inputs();
  ExpectBad(r, "the request has no inputs; expected 'INPUT'");

  r = Request(1);
  *r.add_inputs() = r.inputs(0);
  ExpectBad(r, "the request has 2 inputs");

  r = Request(1);
  r.mutable_inputs(0)->set_name("X");
  ExpectBad(r, "unknown input 'X'; expected 'INPUT'");

  r = Request(1);
  r.add_outputs()->set_name("Y");
  ExpectBad(r, "unknown output 'Y' requested");

  r = Request(1);
  r.mutable_inputs(0)->set_datatype("UINT8");
  ExpectBad(r, "datatype UINT8 does not match the model's INT8");

  r = Request(1);
  r.mutable_inputs(0)->add_shape(1);
  ExpectBad(r, "shape [1, 4, 6, 1] does not match [N, 4, 6]");

  r = Request(1);
  r.mutable_inputs(0)->set_shape(2, 7);
  ExpectBad(r, "shape [1, 4, 7] does not match [N, 4, 6]");

  r = Request(4);
  ExpectBad(r, "4 images; a request carries 1 to 3");

  r = Request(1);
  r.mutable_inputs(0)->set_shape(0, 0);
  ExpectBad(r, "0 images");

  r = Request(1);
  r.mutable_inputs(0)->set_shape(0, -1);
  ExpectBad(r, "-1 images");

  r = Request(1);
  r.mutable_inputs(0)->set_shape(0, 2);
  ExpectBad(r, "raw contents are 24 bytes; shape [2, 4, 6] of INT8 needs 48");

  r = Request(1);
  r.add_raw_input_contents("x");
  ExpectBad(r, "raw_input_contents has 2 entries for 1 input");

  r = Request(1);
  r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1.0f);
  ExpectBad(r, "use one or the other");

  r = Request(1);
  r.clear_raw_input_contents();
  ExpectBad(r, "int_contents holds 0 values; shape [1, 4, 6] needs 24");

  r = Request(1);
  r.clear_raw_input_contents();
  for (int i = 0; i < 24; ++i) r.mutable_inputs(0)->mutable_contents()->add_int_contents(-129);
  ExpectBad(r, "int_contents[0] = -129 is outside INT8");
}

config::ModelConfig EncodedModel() {
  config::ModelConfig c = Model();
  c.set_input_format(config::ENCODED_IMAGE);
  c.mutable_input()->set_datatype("BYTES");
  c.mutable_input()->clear_dims();
  c.mutable_input()->add_dims(1);
  return c;
}

inference::ModelInferRequest BytesRequest(const std::vector<std::string>& files, bool raw = true) {
  inference::ModelInferRequest r;
  r.set_model_name("tiny");
  auto* in = r.add_inputs();
  in->set_name("INPUT");
  in->set_datatype("BYTES");
  in->add_shape(files.size());
  in->add_shape(1);
  if (raw) {
    std::string buf;
    for (const auto& f : files) {
      const uint32_t len = f.size();
      buf.append(reinterpret_cast<const char*>(&len), 4);
      buf.append(f);
    }
    r.add_raw_input_contents(buf);
  } else {
    for (const auto& f : files) in->mutable_contents()->add_bytes_contents(f);
  }
  return r;
}

TEST(PrepareInputTest, EncodedImagesAreSplitFromRawOrTypedBytes) {
  for (bool raw : {true, false}) {
    const auto r = BytesRequest({"abc", "defgh"}, raw);  // views point into it
    auto p = PrepareInput(r, EncodedModel());
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->n_images, 2u);
    ASSERT_EQ(p->encoded.size(), 2u);
    EXPECT_EQ(p->encoded[0], "abc");
    EXPECT_EQ(p->encoded[1], "defgh");
  }
  auto r = BytesRequest({"abc"});
  r.mutable_inputs(0)->mutable_shape()->RemoveLast();  // plain [N] is accepted
  EXPECT_TRUE(PrepareInput(r, EncodedModel()).ok());
}

TEST(PrepareInputTest, MalformedBytesAreRefused) {
  auto r = BytesRequest({"abc", "de"});
  r.mutable_raw_input_contents(0)->resize(12);  // cuts into element 1's bytes
  EXPECT_THAT(std::string(PrepareInput(r, EncodedModel()).status().message()),
              HasSubstr("element 1 claims 2 bytes but only 1 remain"));
  r.mutable_raw_input_contents(0)->resize(9);  // cuts into element 1's length
  EXPECT_THAT(std::string(PrepareInput(r, EncodedModel()).status().message()),
              HasSubstr("end inside the length of element 1"));
  r = BytesRequest({"abc"});
  r.mutable_inputs(0)->set_shape(0, 2);
  EXPECT_THAT(PrepareInput(r, EncodedModel()).status().message(),
              HasSubstr("hold 1 elements; the shape says 2"));
  EXPECT_THAT(PrepareInput(BytesRequest({"", "x"}), EncodedModel()).status().message(),
              HasSubstr("image 0 is empty"));
}

TEST(PrepareInputTest, ClassificationParameterIsCheckedAndReturned) {
  auto r = Request(1);
  auto* out = r.add_outputs();
  out->set_name("OUTPUT");
  (*out->mutable_parameters())["classification"].set_int64_param(3);
  auto p = PrepareInput(r, Model());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->classification, 3u);
  (*out->mutable_parameters())["classification"].set_int64_param(11);
  ExpectBad(r, "classification must be an integer from 1 to 10");
}

}  // namespace
}  // namespace hgpipe::server

namespace hgpipe::server {
namespace {

config::ModelConfig PolicyModel(uint32_t levels, uint64_t default_timeout_us = 0) {
  config::ModelConfig c = Model();
  c.mutable_batching()->set_priority_levels(levels);
  c.mutable_batching()->set_default_priority_level(levels);
  c.mutable_batching()->set_default_timeout_us(default_timeout_us);
  return c;
}

TEST(SchedulerDeadlineTest, KeepsTheReserveBackForTheAnswersWayBack) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  const absl::Duration reserve = absl::Microseconds(500);
  // A 250 ms timeout: the scheduler works to 249.5 ms.
  EXPECT_EQ(SchedulerDeadline(t0, t0 + absl::Milliseconds(250), reserve),
            t0 + absl::Microseconds(249'500));
  // A 1 ms timeout keeps three quarters of it: the reserve alone never
  // refuses a short timeout.
  EXPECT_EQ(SchedulerDeadline(t0, t0 + absl::Milliseconds(1), reserve),
            t0 + absl::Microseconds(750));
  // No deadline, no reserve, or a deadline already past: unchanged.
  EXPECT_EQ(SchedulerDeadline(t0, absl::InfiniteFuture(), reserve), absl::InfiniteFuture());
  EXPECT_EQ(SchedulerDeadline(t0, t0 + absl::Milliseconds(5), absl::ZeroDuration()),
            t0 + absl::Milliseconds(5));
  EXPECT_EQ(SchedulerDeadline(t0, t0 - absl::Milliseconds(1), reserve), t0 - absl::Milliseconds(1));
}

TEST(RequestPolicyTest, AbsentParametersMeanTheModelDefaults) {
  auto p = ParseRequestPolicy(Request(1), PolicyModel(3));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->priority, 0u);
  EXPECT_EQ(p->timeout, absl::InfiniteDuration());
  p = ParseRequestPolicy(Request(1), PolicyModel(3, 2500));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->timeout, absl::Microseconds(2500));
}

TEST(RequestPolicyTest, TritonStyleParametersAreRead) {
  // Triton's clients send priority as uint64 and timeout as int64.
  auto r = Request(1);
  (*r.mutable_parameters())["priority"].set_uint64_param(2);
  (*r.mutable_parameters())["timeout"].set_int64_param(1500);
  (*r.mutable_parameters())["sequence_id"].set_string_param("ignored");
  auto p = ParseRequestPolicy(r, PolicyModel(3, 99));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->priority, 2u);
  EXPECT_EQ(p->timeout, absl::Microseconds(1500));
  // The other integer types work too; 0 means the default.
  (*r.mutable_parameters())["priority"].set_int64_param(0);
  (*r.mutable_parameters())["timeout"].set_uint64_param(0);
  p = ParseRequestPolicy(r, PolicyModel(3, 99));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->priority, 0u);
  EXPECT_EQ(p->timeout, absl::Microseconds(99));
  (*r.mutable_parameters())["priority"].set_int64_param(3);
  EXPECT_EQ(ParseRequestPolicy(r, PolicyModel(3))->priority, 3u);
  // As Triton: a level above the model's is its default level.
  (*r.mutable_parameters())["priority"].set_uint64_param(4);
  EXPECT_EQ(ParseRequestPolicy(r, PolicyModel(3))->priority, 0u);
  (*r.mutable_parameters())["priority"].set_uint64_param(2);
  EXPECT_EQ(ParseRequestPolicy(r, PolicyModel(1))->priority, 0u);
}

TEST(RequestPolicyTest, MinAccuracyIsAFractionAsDoubleOrString) {
  auto r = Request(1);
  EXPECT_FALSE(ParseRequestPolicy(r, PolicyModel(1))->min_accuracy.has_value());
  (*r.mutable_parameters())["min_accuracy"].set_double_param(0.87);
  EXPECT_EQ(*ParseRequestPolicy(r, PolicyModel(1))->min_accuracy, 0.87);
  (*r.mutable_parameters())["min_accuracy"].set_string_param("0.5");
  EXPECT_EQ(*ParseRequestPolicy(r, PolicyModel(1))->min_accuracy, 0.5);
  for (double bad : {0.0, -0.1, 1.01, std::nan("")}) {
    (*r.mutable_parameters())["min_accuracy"].set_double_param(bad);
    auto p = ParseRequestPolicy(r, PolicyModel(1));
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(p.status().message(), HasSubstr("parameter 'min_accuracy'")) << bad;
  }
  (*r.mutable_parameters())["min_accuracy"].set_int64_param(1);
  EXPECT_EQ(ParseRequestPolicy(r, PolicyModel(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  (*r.mutable_parameters())["min_accuracy"].set_string_param("high");
  EXPECT_EQ(ParseRequestPolicy(r, PolicyModel(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RequestPolicyTest, BadValuesAreInvalidArgumentNamingTheParameter) {
  struct Case {
    const char* name;
    inference::InferParameter value;
    const char* message;
  };
  std::vector<Case> cases;
  auto add = [&](const char* name, auto set, const char* message) {
    inference::InferParameter v;
    set(v);
    cases.push_back({name, v, message});
  };
  add(
      "priority", [](auto& v) { v.set_int64_param(-1); }, "parameter 'priority': -1 is negative");
  add(
      "priority", [](auto& v) { v.set_string_param("high"); },
      "parameter 'priority': must be an int64 or uint64 parameter");
  add(
      "priority", [](auto& v) { v.set_double_param(1.0); },
      "parameter 'priority': must be an int64 or uint64");
  add(
      "priority", [](auto& v) { v.set_bool_param(true); },
      "parameter 'priority': must be an int64 or uint64");
  add(
      "priority", [](auto&) {}, "parameter 'priority': no value");
  add(
      "timeout", [](auto& v) { v.set_int64_param(-5); }, "parameter 'timeout': -5 is negative");
  add(
      "timeout", [](auto& v) { v.set_double_param(0.5); },
      "parameter 'timeout': must be an int64 or uint64 parameter (microseconds");
  add(
      "timeout", [](auto& v) { v.set_string_param("1s"); }, "parameter 'timeout': must be");
  add(
      "timeout", [](auto& v) { v.set_uint64_param(3'600'000'001); },
      "parameter 'timeout': 3600000001 microseconds is more than an hour");
  for (const Case& c : cases) {
    auto r = Request(1);
    (*r.mutable_parameters())[c.name] = c.value;
    auto p = ParseRequestPolicy(r, PolicyModel(3));
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(p.status().message(), HasSubstr(c.message));
    EXPECT_THAT(p.status().message(), HasSubstr("model 'tiny'"));
  }
}

}  // namespace
}  // namespace hgpipe::server
