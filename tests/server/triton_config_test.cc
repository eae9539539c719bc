#include "server/triton_config.h"

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;

config::ModelConfig Verify() {
  config::ModelConfig c;
  c.set_name("v");
  c.set_bitstream("verify");
  c.mutable_input()->set_name("INPUT");
  c.mutable_input()->set_datatype("INT8");
  c.mutable_input()->add_dims(196);
  c.mutable_input()->add_dims(768);
  c.mutable_output()->set_name("OUTPUT");
  c.mutable_output()->set_datatype("INT32");
  c.mutable_output()->add_dims(1000);
  c.set_max_images_per_request(256);
  c.mutable_batching()->set_max_images_per_run(32);
  c.mutable_batching()->set_priority_levels(2);
  c.mutable_batching()->set_default_priority_level(2);
  c.mutable_batching()->set_max_queue_images(4096);
  c.mutable_batching()->set_default_timeout_us(5000);
  return c;
}

TEST(TritonConfigTest, OurConfigAsTritons) {
  const inference::ModelConfig t = ToTritonConfig(Verify());
  EXPECT_EQ(t.name(), "v");
  EXPECT_EQ(t.platform(), "hgpipe/verify");
  EXPECT_EQ(t.backend(), "hgpipe");
  EXPECT_EQ(t.max_batch_size(), 256);
  EXPECT_EQ(t.input(0).data_type(), inference::TYPE_INT8);
  EXPECT_THAT(t.input(0).dims(), ::testing::ElementsAre(196, 768));
  EXPECT_EQ(t.output(0).data_type(), inference::TYPE_INT32);
  EXPECT_EQ(t.dynamic_batching().priority_levels(), 2u);
  EXPECT_EQ(t.dynamic_batching().default_queue_policy().default_timeout_microseconds(), 5000u);
  EXPECT_EQ(t.dynamic_batching().default_queue_policy().max_queue_size(), 4096u);
  EXPECT_EQ(t.parameters().at("max_images_per_run").string_value(), "32");
  EXPECT_EQ(TritonDataType("BYTES"), inference::TYPE_STRING);
}

TEST(TritonConfigTest, JsonOverrideChangesWhatItNames) {
  config::ModelConfig c = Verify();
  ASSERT_TRUE(ApplyTritonConfigJson(
                  R"({"name":"v","max_batch_size":8,"platform":"hgpipe/verify",
                      "dynamic_batching":{"max_queue_delay_microseconds":"100",
                        "priority_levels":3,"default_queue_policy":{"max_queue_size":10}},
                      "parameters":{"max_images_per_run":{"string_value":"4"}},
                      "instance_group":[{"kind":"KIND_MODEL","count":1}],
                      "some_future_field":true})",
                  &c)
                  .ok());
  EXPECT_EQ(c.max_images_per_request(), 8u);
  EXPECT_EQ(c.batching().max_queue_delay_us(), 100u);
  EXPECT_EQ(c.batching().priority_levels(), 3u);
  EXPECT_EQ(c.batching().max_queue_images(), 10u);
  EXPECT_EQ(c.batching().max_images_per_run(), 4u);
  EXPECT_EQ(c.batching().default_timeout_us(), 0u);  // the policy given has none
  // Our own config round-trips.
  config::ModelConfig d = Verify();
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ToTritonConfig(Verify()), &json).ok());
  ASSERT_TRUE(ApplyTritonConfigJson(json, &d).ok()) << json;
  EXPECT_EQ(d.SerializeAsString(), Verify().SerializeAsString());
}

TEST(TritonConfigTest, WhatCannotBeHonouredIsRefusedNamingTheField) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {"{", "not a Triton ModelConfig in JSON"},
      {R"({"name":"other"})", "config name: 'other' is not the model being loaded"},
      {R"({"platform":"onnxruntime_onnx"})", "config platform"},
      {R"({"backend":"python"})", "config backend"},
      {R"({"dynamic_batching":{"preferred_batch_size":[4]}})", "preferred_batch_size"},
      {R"({"dynamic_batching":{"default_queue_policy":{"timeout_action":"DELAY"}}})", "DELAY"},
      {R"({"input":[{"name":"a"},{"name":"b"}]})", "config input: the model takes one input"},
      {R"({"parameters":{"colour":{"string_value":"red"}}})", "parameters.colour: unknown"},
      {R"({"parameters":{"max_images_per_run":{"string_value":"many"}}})", "is not a number"},
  };
  for (const Case& k : cases) {
    config::ModelConfig c = Verify();
    absl::Status s = ApplyTritonConfigJson(k.json, &c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << k.json;
    EXPECT_THAT(s.message(), HasSubstr(k.message)) << k.json;
  }
}

}  // namespace
}  // namespace hgpipe::server
