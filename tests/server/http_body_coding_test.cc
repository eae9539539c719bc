#include "server/http_body_coding.h"

#include <zlib.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;

// `data` deflated with zlib's `window_bits` (31 gzip, 15 zlib, -15 raw).
std::string Deflate(const std::string& data, int window_bits) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Body() {
  std::string s = R"({"inputs":[{"name":"INPUT","datatype":"INT8"}]})";
  for (int i = 0; i < 100000; ++i) s += static_cast<char>((i * 7919) >> 3);
  return s;
}

TEST(ParseContentEncodingTest, KnowsGzipDeflateAndIdentityOnly) {
  EXPECT_EQ(*ParseContentEncoding("gzip"), BodyCoding::kGzip);
  EXPECT_EQ(*ParseContentEncoding(" GZip "), BodyCoding::kGzip);
  EXPECT_EQ(*ParseContentEncoding("x-gzip"), BodyCoding::kGzip);
  EXPECT_EQ(*ParseContentEncoding("deflate"), BodyCoding::kDeflate);
  EXPECT_EQ(*ParseContentEncoding("identity"), BodyCoding::kIdentity);
  for (const char* bad : {"br", "gzip, deflate", "compress"}) {
    auto c = ParseContentEncoding(bad);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_THAT(c.status().message(), HasSubstr(bad));
  }
}

TEST(InflateBodyTest, GzipZlibAndRawDeflateGiveTheBodyBack) {
  const std::string body = Body();
  EXPECT_EQ(*InflateBody(BodyCoding::kGzip, Deflate(body, 31), 1 << 20), body);
  EXPECT_EQ(*InflateBody(BodyCoding::kDeflate, Deflate(body, 15), 1 << 20), body);
  EXPECT_EQ(*InflateBody(BodyCoding::kDeflate, Deflate(body, -15), 1 << 20), body);
  EXPECT_EQ(*InflateBody(BodyCoding::kGzip, Deflate("", 31), 1 << 20), "");
  // Exactly at the limit is allowed.
  EXPECT_EQ(*InflateBody(BodyCoding::kGzip, Deflate(body, 31), body.size()), body);
}

TEST(InflateBodyTest, CorruptTruncatedAndTrailingDataAreInvalid) {
  const std::string gz = Deflate(Body(), 31);
  auto corrupt = InflateBody(BodyCoding::kGzip, "this is not gzip data", 1 << 20);
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(corrupt.status().message(), HasSubstr("does not inflate"));
  auto truncated = InflateBody(BodyCoding::kGzip, gz.substr(0, gz.size() / 2), 1 << 20);
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(truncated.status().message(), HasSubstr("truncated"));
  auto trailing = InflateBody(BodyCoding::kGzip, gz + "xyz", 1 << 20);
  EXPECT_EQ(trailing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(trailing.status().message(), HasSubstr("after its end"));
  std::string flipped = gz;
  flipped[flipped.size() / 2] ^= 0x55;
  EXPECT_FALSE(InflateBody(BodyCoding::kGzip, flipped, 1 << 20).ok());
}

TEST(InflateBodyTest, ABombStopsAtTheLimit) {
  // 64 MiB of zeros deflate to about 64 KB; the limit stops it at 1 MiB.
  const std::string bomb = Deflate(std::string(64 << 20, '\0'), 31);
  ASSERT_LT(bomb.size(), 100u << 10);
  auto r = InflateBody(BodyCoding::kGzip, bomb, 1 << 20);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("more than 1048576 bytes"));
  EXPECT_EQ(InflateBody(BodyCoding::kIdentity, "12345", 4).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace hgpipe::server
