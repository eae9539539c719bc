#include "accel/xrt/xclbin_file.h"

#include <cstring>
#include <string>

#include "base/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::accel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<uint32_t> Kinds(const XclbinContents& c) {
  std::vector<uint32_t> kinds;
  for (const XclbinSection& s : c.sections) kinds.push_back(s.kind);
  return kinds;
}

TEST(XclbinFileTest, BuildsWhatParseReadsBack) {
  XclbinSpec spec;
  spec.uuid = *ParseUuidHex("00112233-4455-6677-8899-aabbccddeeff");
  spec.manifest = "model: \"m\"\n";
  spec.key_values = {{"hgpipe.model", "m"}};
  absl::StatusOr<std::string> bytes = BuildXclbin(spec);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->size() % 8, 0u);
  EXPECT_EQ(bytes->compare(0, 8, std::string("xclbin2\0", 8)), 0);

  absl::StatusOr<XclbinContents> c = ParseXclbin(*bytes, "test");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(UuidToHex(c->uuid), "00112233445566778899aabbccddeeff");
  EXPECT_EQ(c->platform_vbnv, spec.platform_vbnv);
  EXPECT_EQ(c->length, bytes->size());
  EXPECT_EQ(c->mode, 0);  // XCLBIN_FLAT
  EXPECT_THAT(Kinds(*c),
              ElementsAre(kXclbinMemTopology, kXclbinIpLayout, kXclbinConnectivity,
                          kXclbinEmbeddedMetadata, kXclbinKeyValueMetadata, kXclbinUserMetadata));
  for (const XclbinSection& s : c->sections) EXPECT_EQ(s.offset % 8, 0u);

  ASSERT_EQ(c->ips.size(), 1u);
  EXPECT_EQ(c->ips[0].name, "hgpipe_top:hgpipe_top_1");
  EXPECT_EQ(c->ips[0].type, 1u);     // IP_KERNEL
  EXPECT_EQ(c->ips[0].control, 1u);  // ap_ctrl_chain
  EXPECT_TRUE(c->ips[0].interrupt);

  EXPECT_EQ(c->Section(kXclbinUserMetadata, kManifestSectionName), "model: \"m\"\n");
  EXPECT_EQ(c->Section(kXclbinUserMetadata, "other"), std::nullopt);
  EXPECT_THAT(std::string(*c->Section(kXclbinKeyValueMetadata)),
              HasSubstr("{\"key\":\"hgpipe.model\",\"value\":\"m\"}"));
  const std::string xml(*c->Section(kXclbinEmbeddedMetadata));
  EXPECT_THAT(xml, HasSubstr("<kernel name=\"hgpipe_top\""));
  EXPECT_THAT(xml, HasSubstr("hwControlProtocol=\"ap_ctrl_chain\""));
  EXPECT_THAT(xml, HasSubstr("<arg name=\"n_images\" addressQualifier=\"0\" "
                             "id=\"2\""));
}

TEST(XclbinFileTest, OmitsOptionalSectionsAndDrawsARandomUuid) {
  XclbinSpec spec;
  absl::StatusOr<std::string> a = BuildXclbin(spec);
  absl::StatusOr<std::string> b = BuildXclbin(spec);
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<XclbinContents> ca = ParseXclbin(*a, "a");
  absl::StatusOr<XclbinContents> cb = ParseXclbin(*b, "b");
  ASSERT_TRUE(ca.ok() && cb.ok());
  EXPECT_NE(ca->uuid, cb->uuid);
  EXPECT_NE(ca->uuid, XclbinUuid{});
  EXPECT_EQ(ca->sections.size(), 4u);
  EXPECT_EQ(ca->Section(kXclbinUserMetadata), std::nullopt);
}

TEST(XclbinFileTest, RejectsBadMagicAndTruncation) {
  std::string bytes = *BuildXclbin(XclbinSpec{});
  std::string bad = bytes;
  bad[0] = 'X';
  absl::StatusOr<XclbinContents> c = ParseXclbin(bad, "f.xclbin");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("f.xclbin: not an xclbin: bad magic"));

  c = ParseXclbin(absl::string_view(bytes).substr(0, 100), "f.xclbin");
  EXPECT_THAT(c.status().message(), HasSubstr("truncated"));
  c = ParseXclbin(absl::string_view(bytes).substr(0, bytes.size() - 8), "f.xclbin");
  EXPECT_THAT(c.status().message(), HasSubstr("truncated"));
  EXPECT_EQ(ParseXclbin("", "empty").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(XclbinFileTest, RefusesNamesThatDoNotFit) {
  XclbinSpec spec;
  spec.kernel.name = std::string(40, 'k');
  spec.kernel.instance = std::string(40, 'i');
  EXPECT_THAT(BuildXclbin(spec).status().message(), HasSubstr("compute unit name"));
  spec = XclbinSpec{};
  spec.kernel.args.clear();
  EXPECT_EQ(BuildXclbin(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(XclbinFileTest, UuidHex) {
  const XclbinUuid u = RandomUuid();
  EXPECT_EQ(*ParseUuidHex(UuidToHex(u)), u);
  EXPECT_TRUE(ParseUuidHex("00112233-4455-6677-8899-AABBCCDDEEFF").ok());
  EXPECT_FALSE(ParseUuidHex("0011").ok());
  EXPECT_FALSE(ParseUuidHex("g0112233445566778899aabbccddeeff").ok());
}

TEST(XclbinFileTest, RepackageReplacesOnlyTheManifest) {
  XclbinSpec spec;
  spec.manifest = "model: \"old\"\n";
  spec.key_values = {{"k", "v"}};
  const std::string bytes = *BuildXclbin(spec);
  absl::StatusOr<std::string> out = Repackage(bytes, "in.xclbin", "model: \"new\"\n");
  ASSERT_TRUE(out.ok()) << out.status();
  const XclbinContents before = *ParseXclbin(bytes, "before");
  absl::StatusOr<XclbinContents> after = ParseXclbin(*out, "after");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->uuid, before.uuid);
  EXPECT_EQ(after->sections.size(), before.sections.size());
  EXPECT_EQ(after->Section(kXclbinUserMetadata, kManifestSectionName), "model: \"new\"\n");
  for (uint32_t kind : {kXclbinMemTopology, kXclbinIpLayout, kXclbinConnectivity,
                        kXclbinEmbeddedMetadata, kXclbinKeyValueMetadata}) {
    EXPECT_EQ(after->Section(kind), before.Section(kind)) << XclbinSectionKindName(kind);
  }
  // A container without a manifest gains one.
  const std::string plain = *BuildXclbin(XclbinSpec{});
  out = Repackage(plain, "plain", "model: \"x\"\n");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(ParseXclbin(*out, "x")->Section(kXclbinUserMetadata), "model: \"x\"\n");
}

TEST(XclbinFileTest, RepackageRefusesSignedContainers) {
  std::string bytes = *BuildXclbin(XclbinSpec{});
  const int32_t signature_length = 256;
  std::memcpy(&bytes[8], &signature_length, sizeof(signature_length));
  absl::StatusOr<std::string> out = Repackage(bytes, "signed.xclbin", "");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("signed.xclbin"));
}

TEST(XclbinFileTest, ReadWholeFileNamesMissingFiles) {
  absl::StatusOr<std::string> r = ReadWholeFile("/nonexistent/x.xclbin");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/x.xclbin"));
}

}  // namespace
}  // namespace hgpipe::accel
