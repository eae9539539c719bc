#include "clients/client.h"

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::clients {
namespace {

using ::testing::HasSubstr;

TEST(FromGrpcStatusTest, KeepsTheCodeAndTheServersMessage) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK, "ModelInfer", "h:1").ok());
  absl::Status s = FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown model 'x'"),
                                  "ModelInfer(x)", "localhost:8001");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("unknown model 'x'"));
  EXPECT_THAT(s.message(), HasSubstr("ModelInfer(x)"));
  EXPECT_THAT(s.message(), HasSubstr("localhost:8001"));
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"),
                           "ModelInfer", "h:1")
                .code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(StatusCodeNameTest, CanonicalNames) {
  EXPECT_EQ(StatusCodeName(0), "OK");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAVAILABLE), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(99), "CODE_99");
}

TEST(InferenceClientTest, CreateChecksItsArguments) {
  EXPECT_EQ(InferenceClient::Create("").status().code(), absl::StatusCode::kInvalidArgument);
  InferenceClient::Options o;
  o.channel.max_message_bytes = 0;
  EXPECT_EQ(InferenceClient::Create("localhost:1", o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(InferenceClient::Create("localhost:1").ok());
}

TEST(InferenceClientTest, NoServerIsUnavailableNamingTheTarget) {
  InferenceClient::Options o;
  o.timeout = absl::Seconds(20);
  auto client = InferenceClient::Create("127.0.0.1:1", o);
  ASSERT_TRUE(client.ok());
  absl::StatusOr<bool> live = (*client)->Live();
  EXPECT_EQ(live.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(live.status().message(), HasSubstr("ServerLive to 127.0.0.1:1"));
  auto index = (*client)->RepositoryIndex();
  EXPECT_EQ(index.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(index.status().message(), HasSubstr("RepositoryIndex to 127.0.0.1:1"));
  absl::Status load = (*client)->LoadModel("verify");
  EXPECT_EQ(load.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(load.message(), HasSubstr("RepositoryModelLoad(verify) to 127.0.0.1:1"));
  absl::Status unload = (*client)->UnloadModel("verify");
  EXPECT_THAT(unload.message(), HasSubstr("RepositoryModelUnload(verify) to 127.0.0.1:1"));
}

}  // namespace
}  // namespace hgpipe::clients
