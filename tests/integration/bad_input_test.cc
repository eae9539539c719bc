// Bad requests through real gRPC: each gets the KServe v2 code
// (Triton's protocol, docs/serving.md) and a message saying what is wrong, while the
// server keeps serving a good client running alongside.
#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

using clients::InferenceClient;
using ::testing::HasSubstr;

class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // 2 MiB messages at most, so an oversized request is cheap to make.
    auto s = ServerProcess::Start({"--boards=sim:1", "--max-message-mb=2"});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
    client_ = InferenceClient::Create(server_->grpc_target())->release();
    // A well-behaved client keeps sending during every test.
    good_thread_ = new std::thread([] {
      InferenceClient::Options o;
      o.channel.connection_index = 1;
      o.timeout = absl::Seconds(60);
      auto c = InferenceClient::Create(server_->grpc_target(), o);
      const std::vector<int8_t> img = clients::GenerateRandomImages(2, 99);
      const auto req = *clients::MakeImageRequest("verify", img);
      while (!stop_good_) {
        auto r = (*c)->Infer(req);
        if (!r.ok() ||
            !clients::CheckVerifyRow(absl::MakeConstSpan(img).subspan(0, clients::kImageBytes),
                                     absl::MakeConstSpan(clients::ReadInt32Output(*r)->values)
                                         .subspan(0, clients::kClasses))
                 .ok()) {
          good_failures_++;
        } else {
          good_ok_++;
        }
      }
    });
  }
  static void TearDownTestSuite() {
    // A test may take less than the good client's first round trip (ctest
    // runs each test alone); let it finish one before judging it.
    for (int i = 0; i < 600 && good_ok_.load() + good_failures_.load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    stop_good_ = true;
    good_thread_->join();
    delete good_thread_;
    EXPECT_EQ(good_failures_.load(), 0);
    EXPECT_GT(good_ok_.load(), 0);
    delete client_;
    const ExitResult r = server_->Stop(SIGTERM);
    EXPECT_TRUE(r.exited && r.code == 0) << r.log;
    delete server_;
  }

  static inference::ModelInferRequest Good(int n = 1) {
    return *clients::MakeImageRequest("verify", clients::GenerateRandomImages(n, n));
  }
  static absl::Status Send(const inference::ModelInferRequest& r) {
    return client_->Infer(r).status();
  }

  static ServerProcess* server_;
  static InferenceClient* client_;
  static std::thread* good_thread_;
  static std::atomic<bool> stop_good_;
  static std::atomic<int> good_ok_, good_failures_;
};

ServerProcess* BadInputTest::server_;
InferenceClient* BadInputTest::client_;
std::thread* BadInputTest::good_thread_;
std::atomic<bool> BadInputTest::stop_good_{false};
std::atomic<int> BadInputTest::good_ok_{0};
std::atomic<int> BadInputTest::good_failures_{0};

TEST_F(BadInputTest, UnknownModelIsNotFound) {
  auto r = Good();
  r.set_model_name("resnet50");
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("unknown model 'resnet50'"));
}

TEST_F(BadInputTest, UnknownVersionIsNotFound) {
  auto r = Good();
  r.set_model_version("7");
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("no version '7'"));
}

TEST_F(BadInputTest, WrongDatatypeIsInvalidArgument) {
  auto r = Good();
  r.mutable_inputs(0)->set_datatype("FP32");
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("datatype FP32 does not match the model's INT8"));
}

TEST_F(BadInputTest, ShapeMismatchIsInvalidArgument) {
  auto r = Good();
  r.mutable_inputs(0)->set_shape(2, 767);
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("shape [1, 196, 767] does not match [N, 196, 768]"));
}

TEST_F(BadInputTest, RawSizeMismatchIsInvalidArgument) {
  auto r = Good(1);
  r.mutable_inputs(0)->set_shape(0, 2);  // says 2 images, carries 1
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("raw contents are 150528 bytes"));
  EXPECT_THAT(s.message(), HasSubstr("needs 301056"));
}

TEST_F(BadInputTest, RawAndTypedContentsTogetherAreInvalidArgument) {
  auto r = Good();
  r.mutable_inputs(0)->mutable_contents()->add_int_contents(1);
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("use one or the other"));
}

TEST_F(BadInputTest, NoInputsIsInvalidArgument) {
  auto r = Good();
  r.clear_inputs();
  r.clear_raw_input_contents();
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("no inputs"));
}

TEST_F(BadInputTest, OversizedMessageIsResourceExhausted) {
  const absl::Status s = Send(Good(16));  // 2.4 MB > --max-message-mb=2
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("larger than max"));
}

TEST_F(BadInputTest, UnknownInputNameIsInvalidArgument) {
  auto r = Good();
  r.mutable_inputs(0)->set_name("IMAGE");
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("unknown input 'IMAGE'; expected 'INPUT'"));
}

TEST_F(BadInputTest, UnknownRequestedOutputIsInvalidArgument) {
  auto r = Good();
  r.clear_outputs();
  r.add_outputs()->set_name("PROBS");
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("unknown output 'PROBS'"));
}

TEST_F(BadInputTest, TypedContentsWorkAndOutOfRangeValuesAreRefused) {
  const std::vector<int8_t> img = clients::GenerateRandomImages(1, 5);
  inference::ModelInferRequest r = Good();
  r.clear_raw_input_contents();
  for (int8_t v : img) r.mutable_inputs(0)->mutable_contents()->add_int_contents(v);
  auto ok = client_->Infer(r);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(clients::CheckVerifyRow(img, clients::ReadInt32Output(*ok)->values).ok());
  r.mutable_inputs(0)->mutable_contents()->set_int_contents(10, 300);
  const absl::Status s = Send(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("int_contents[10] = 300 is outside INT8"));
}

// Protobuf logs each string field with invalid UTF-8 it parses; a client
// sending such requests must not write a log line per request.
TEST_F(BadInputTest, InvalidUtf8DoesNotFloodTheLog) {
  auto r = Good();
  r.set_model_name("verify\xff\xfe");
  r.set_id("\xc3\x28");
  const google::protobuf::LogSilencer quiet;  // this process's protobuf, sending them
  for (int i = 0; i < 200; ++i) {
    EXPECT_FALSE(Send(r).ok());
  }
  EXPECT_TRUE(Send(Good()).ok());
  const std::string log = server_->Log();
  size_t lines = 0;
  for (size_t at = log.find("invalid UTF-8"); at != std::string::npos;
       at = log.find("invalid UTF-8", at + 1)) {
    ++lines;
  }
  // One line per minute: at most two if the test straddles a minute's end.
  EXPECT_GE(lines, 1u) << "protobuf saw no invalid UTF-8: the test sends none";
  EXPECT_LE(lines, 2u) << log.substr(0, 2000);
}

TEST_F(BadInputTest, BadRequestsAreCountedByCode) {
  auto r = Good();
  r.mutable_inputs(0)->set_datatype("UINT8");
  ASSERT_EQ(Send(r).code(), absl::StatusCode::kInvalidArgument);
  auto m = HttpGet(server_->metrics_url());
  ASSERT_TRUE(m.ok());
  EXPECT_GE(*MetricValue(*m, "hgpipe_requests_total", R"(code="INVALID_ARGUMENT",model="verify")"),
            1);
}

}  // namespace
}  // namespace hgpipe::testing
