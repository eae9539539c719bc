#include "server/client_text.h"

#include <string>

#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

TEST(ClientTextTest, QuoteEscapesAndBoundsClientText) {
  EXPECT_EQ(Quote("verify"), "'verify'");
  EXPECT_EQ(Quote(std::string("a\0z", 3)), "'a\\x00z'");
  EXPECT_EQ(Quote("tab\there"), "'tab\\there'");
  const std::string q = Quote(std::string(10'000, 'x'));
  EXPECT_LT(q.size(), 200u);
  EXPECT_NE(q.find("...' (10000 bytes)"), std::string::npos) << q;
  EXPECT_EQ(q.substr(0, 1 + kMaxQuotedBytes), "'" + std::string(kMaxQuotedBytes, 'x'));
}

TEST(ClientTextTest, ModelNamesWithNulSlashOrControlBytesNameNoModel) {
  EXPECT_TRUE(IsValidModelName("fmnist_vit"));
  EXPECT_TRUE(IsValidModelName("with space"));
  EXPECT_FALSE(IsValidModelName(""));
  EXPECT_FALSE(IsValidModelName("."));
  EXPECT_FALSE(IsValidModelName(".."));
  EXPECT_FALSE(IsValidModelName("a/b"));
  EXPECT_FALSE(IsValidModelName(std::string("verify\0x", 8)));
  EXPECT_FALSE(IsValidModelName("new\nline"));
  EXPECT_FALSE(IsValidModelName(std::string(256, 'm')));
}

TEST(ClientTextTest, BoundedStatusCutsOnlyLongMessages) {
  const absl::Status short_one = absl::NotFoundError("unknown model 'x'");
  EXPECT_EQ(BoundedStatus(short_one), short_one);
  const absl::Status cut = BoundedStatus(absl::InvalidArgumentError(std::string(5000, 'm')));
  EXPECT_EQ(cut.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LE(cut.message().size(), kMaxStatusMessageBytes);
  EXPECT_NE(cut.message().find("(cut)"), absl::string_view::npos);
}

}  // namespace
}  // namespace hgpipe::server
