#include "server/rest_json.h"

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;

TEST(RestJsonTest, BinaryInputIsMovedIntoTheRequest) {
  std::string json =
      R"({"id":"a","parameters":{"priority":2,"binary_data_output":true},)"
      R"("inputs":[{"name":"X","datatype":"INT8","shape":[1,4],"parameters":{"binary_data_size":4}}],)"
      R"("outputs":[{"name":"Y","parameters":{"classification":3,"binary_data":false}}]})";
  std::string binary("\x01\x02\x03\x04", 4);
  RestInferRequest r;
  ASSERT_TRUE(ParseRestInferRequest(json, std::move(binary), "m", "1", &r).ok());
  EXPECT_EQ(r.request.model_name(), "m");
  EXPECT_EQ(r.request.model_version(), "1");
  EXPECT_EQ(r.request.id(), "a");
  EXPECT_EQ(r.request.parameters().at("priority").int64_param(), 2);
  EXPECT_EQ(r.request.parameters().count("binary_data_output"), 0u);
  EXPECT_TRUE(r.binary_output);
  ASSERT_EQ(r.request.raw_input_contents_size(), 1);
  EXPECT_EQ(r.request.raw_input_contents(0), std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(r.request.inputs(0).parameters().count("binary_data_size"), 0u);
  EXPECT_EQ(r.request.outputs(0).parameters().at("classification").int64_param(), 3);
  ASSERT_EQ(r.output_binary.size(), 1u);
  EXPECT_FALSE(r.output_binary[0].second);
}

TEST(RestJsonTest, LargeBinaryKeepsItsBuffer) {
  std::string json =
      R"({"inputs":[{"name":"X","datatype":"INT8","shape":[1,150528],"parameters":{"binary_data_size":150528}}]})";
  std::string binary(150528, '\x07');
  const char* data = binary.data();
  RestInferRequest r;
  ASSERT_TRUE(ParseRestInferRequest(json, std::move(binary), "m", "", &r).ok());
  EXPECT_EQ(r.request.raw_input_contents(0).data(), data);
}

TEST(RestJsonTest, JsonDataNestedOrFlatFillsTypedContents) {
  std::string json =
      R"({"inputs":[{"name":"X","datatype":"INT8","shape":[2,2],"data":[[1,-2],[3,127]]},)"
      R"({"name":"B","datatype":"BYTES","shape":[2],"data":["ab","c"]},)"
      R"({"name":"F","datatype":"FP32","shape":[1],"data":[0.5]}]})";
  RestInferRequest r;
  ASSERT_TRUE(ParseRestInferRequest(json, "", "m", "", &r).ok());
  EXPECT_THAT(r.request.inputs(0).contents().int_contents(), ::testing::ElementsAre(1, -2, 3, 127));
  EXPECT_THAT(r.request.inputs(1).contents().bytes_contents(), ::testing::ElementsAre("ab", "c"));
  EXPECT_THAT(r.request.inputs(2).contents().fp32_contents(), ::testing::ElementsAre(0.5f));
  EXPECT_EQ(r.request.raw_input_contents_size(), 0);
}

TEST(RestJsonTest, BadRequestsSayWhatIsWrong) {
  struct Case {
    std::string json, binary, message;
  } cases[] = {
      {"{", "", "malformed JSON"},
      {"[]", "", "must be a JSON object"},
      {R"({"inputs":[{"name":"X","datatype":"INT8","shape":[3],"data":[1,2]}]})", "",
       "data holds 2 elements; shape [3] needs 3"},
      // More elements than int64 counts: not printed as an exact number.
      {R"({"inputs":[{"name":"X","datatype":"INT8","shape":[9223372036854775807,2],"data":[1]}]})",
       "", "shape [9223372036854775807, 2] needs at least 9223372036854775807"},
      {R"({"inputs":[{"name":"X","datatype":"UINT8","shape":[1],"data":[-1]}]})", "",
       "data[0] = -1 is not UINT8"},
      {R"({"inputs":[{"name":"X","datatype":"INT8","shape":[-1],"data":[]}]})", "",
       "dimensions must be integers >= 0"},
      {R"({"inputs":[{"name":"X","datatype":"INT8","shape":[4],"parameters":{"binary_data_size":5}}]})",
       "1234", "binary_data_size 5 overruns the binary data: 4 bytes remain"},
      {R"({"inputs":[{"name":"X","datatype":"INT8","shape":[4],"parameters":{"binary_data_size":2}}]})",
       "1234", "2 bytes of binary data that no input"},
      {R"({"inputs":[{"name":"X","datatype":"INT8","shape":[1]}]})", "",
       "neither data nor binary_data_size"},
      {R"({"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1],"parameters":{"binary_data_size":1}}]})",
       "1", "both data and binary_data_size"},
      {std::string(R"({"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]})") + '\0' +
           "zz",
       "", "NUL byte"},
  };
  for (Case& c : cases) {
    RestInferRequest r;
    absl::Status s = ParseRestInferRequest(c.json, c.binary, "m", "", &r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
}

TEST(RestJsonTest, ResponseOutputsAreJsonOrBinaryAsAsked) {
  inference::ModelInferResponse resp;
  resp.set_model_name("m");
  resp.set_model_version("1");
  resp.set_id("q");
  auto* o = resp.add_outputs();
  o->set_name("Y");
  o->set_datatype("INT32");
  o->add_shape(1);
  o->add_shape(2);
  const int32_t v[2] = {7, -3};
  resp.add_raw_output_contents()->assign(reinterpret_cast<const char*>(v), 8);
  RestInferRequest json_out;
  RestInferReply r = WriteRestInferResponse(resp, json_out);
  EXPECT_EQ(
      r.json,
      R"({"model_name":"m","model_version":"1","id":"q","outputs":[{"name":"Y","datatype":"INT32","shape":[1,2],"data":[7,-3]}]})");
  EXPECT_TRUE(r.binary.empty());
  RestInferRequest binary_out;
  binary_out.binary_output = true;
  r = WriteRestInferResponse(resp, binary_out);
  EXPECT_THAT(r.json, HasSubstr(R"("parameters":{"binary_data_size":8})"));
  ASSERT_EQ(r.binary.size(), 1u);
  EXPECT_EQ(r.binary[0].data(), resp.raw_output_contents(0).data());
}

TEST(RestJsonTest, MessagesPrintEveryScalarAndNumbersAsNumbers) {
  inference::ModelStatisticsResponse stats;
  auto* s = stats.add_model_stats();
  s->set_name("m");
  s->set_inference_count(uint64_t{1} << 40);
  s->mutable_inference_stats()->mutable_success()->set_count(3);
  const std::string json = MessageToJson(stats);
  EXPECT_THAT(json, HasSubstr(R"("inference_count":1099511627776)"));
  EXPECT_THAT(json, HasSubstr(R"("execution_count":0)"));
  EXPECT_THAT(json, HasSubstr(R"("success":{"count":3,"ns":0})"));
  EXPECT_EQ(ErrorJson("a \"b\"\n"), R"({"error":"a \"b\"\n"})");
}

TEST(RestJsonTest, ParametersArePlainValuesAsKServeWritesThem) {
  inference::ModelMetadataResponse meta;
  meta.set_name("m");
  auto& p = *meta.mutable_parameters();
  p["variants"].set_string_param("full,skip1");
  p["variant.full.top1_accuracy"].set_double_param(0.5);
  p["variant.full.interval_cycles"].set_int64_param(196);
  p["flag"].set_bool_param(true);
  p["big"].set_uint64_param(uint64_t{1} << 40);
  p["unset"];
  const std::string json = MessageToJson(meta);
  EXPECT_THAT(json,
              HasSubstr(R"("parameters":{"big":1099511627776,"flag":true,"unset":null,)"
                        R"("variant.full.interval_cycles":196,"variant.full.top1_accuracy":0.5,)"
                        R"("variants":"full,skip1"})"));
}

}  // namespace
}  // namespace hgpipe::server
