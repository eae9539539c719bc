#include "server/restrictions.h"

#include <map>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;

TEST(RestrictionsTest, GroupsNeedTheirHeaderAndValue) {
  auto r = Restrictions::Parse(
      "http-restricted-api",
      {"model-repository,statistics:Admin-Key=s3cret", "inference:infer=a=b"}, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->any());
  std::map<std::string, std::string> headers;
  auto lookup = [&](const std::string& name) -> std::optional<absl::string_view> {
    auto it = headers.find(name);
    if (it == headers.end()) return std::nullopt;
    return absl::string_view(it->second);
  };
  EXPECT_TRUE(r->Check(ApiGroup::kMetadata, lookup).ok());
  EXPECT_TRUE(r->Check(ApiGroup::kHealth, lookup).ok());
  absl::Status s = r->Check(ApiGroup::kStatistics, lookup);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("expecting header 'admin-key'"));
  headers["admin-key"] = "wrong";
  EXPECT_FALSE(r->Check(ApiGroup::kModelRepository, lookup).ok());
  headers["admin-key"] = "s3cret";
  EXPECT_TRUE(r->Check(ApiGroup::kModelRepository, lookup).ok());
  EXPECT_FALSE(r->Check(ApiGroup::kInference, lookup).ok());
  headers["infer"] = "a=b";  // the value runs to the end
  EXPECT_TRUE(r->Check(ApiGroup::kInference, lookup).ok());
}

TEST(RestrictionsTest, GrpcKeysTakeTritonsPrefix) {
  auto r =
      Restrictions::Parse("grpc-restricted-protocol", {"trace:k=v"}, kGrpcRestrictedHeaderPrefix);
  ASSERT_TRUE(r.ok());
  absl::Status s = r->Check(ApiGroup::kTrace,
                            [](const std::string&) { return std::optional<absl::string_view>(); });
  EXPECT_THAT(s.message(), HasSubstr("'triton-grpc-protocol-k'"));
  EXPECT_FALSE(Restrictions::Parse("x", {}, "")->any());
}

TEST(RestrictionsTest, BadValuesAreRefusedNamingTheFlag) {
  for (const auto& [flag, message] : std::vector<std::pair<std::string, std::string>>{
           {"statistics", "expected GROUPS:KEY=VALUE"},
           {"statistics:k", "expected GROUPS:KEY=VALUE"},
           {"statistics:=v", "expected GROUPS:KEY=VALUE"},
           {"statistics:k=", "expected GROUPS:KEY=VALUE"},
           {":k=v", "expected GROUPS:KEY=VALUE"},
           {"health:k=v", "health stays open"},
           {"stats:k=v", "unknown API group 'stats'"},
       }) {
    auto r = Restrictions::Parse("http-restricted-api", {flag}, "");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << flag;
    EXPECT_THAT(r.status().message(), HasSubstr("--http-restricted-api '")) << flag;
    EXPECT_THAT(r.status().message(), HasSubstr(message)) << flag;
  }
  auto twice = Restrictions::Parse("f", {"trace:a=1", "trace:b=2"}, "");
  EXPECT_THAT(twice.status().message(), HasSubstr("restricted twice"));
}

}  // namespace
}  // namespace hgpipe::server
