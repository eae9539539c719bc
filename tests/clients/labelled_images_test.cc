#include "clients/labelled_images.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::clients {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Idx(std::vector<uint32_t> dims, const std::vector<uint8_t>& data, char type = 8) {
  std::string bytes = {0, 0, type, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift : {24, 16, 8, 0}) bytes += static_cast<char>((d >> shift) & 0xff);
  }
  bytes.append(data.begin(), data.end());
  return bytes;
}

class LabelledImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("hgpipe-labelled-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes, bool gzip = false) {
    const std::string path = (dir_ / name).string();
    if (gzip) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary) << bytes;
    }
    return path;
  }

  fs::path dir_;
};

TEST_F(LabelledImagesTest, ReadsPlainAndGzipIdx) {
  std::vector<uint8_t> pixels(3 * 2 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 9);
  const std::string images = Write("i.gz", Idx({3, 2, 4}, pixels), /*gzip=*/true);
  const std::string labels = Write("l", Idx({3}, {7, 0, 9}));
  absl::StatusOr<LabelledImages> set = ReadLabelledImages(images, labels);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->count(), 3u);
  EXPECT_EQ(set->height, 2);
  EXPECT_EQ(set->width, 4);
  EXPECT_EQ(set->pixels, pixels);
  EXPECT_THAT(set->labels, ::testing::ElementsAre(7, 0, 9));
  EXPECT_THAT(set->image(2),
              ::testing::ElementsAreArray(std::vector<uint8_t>(pixels.begin() + 16, pixels.end())));
}

TEST_F(LabelledImagesTest, RefusesWhatIsNotALabelledSet) {
  const std::string labels = Write("l", Idx({2}, {1, 2}));
  struct Case {
    std::string bytes, error;
  } cases[] = {
      {Idx({2, 2, 2}, std::vector<uint8_t>(8), /*type=*/0x0d), "not an IDX file of unsigned bytes"},
      {Idx({2, 4}, std::vector<uint8_t>(8)), "2 dimensions, expected 3"},
      {Idx({2, 0, 2}, {}), "dimension 1 is 0"},
      {Idx({2, 2, 2}, std::vector<uint8_t>(7)), "ends inside the pixels"},
      {Idx({3, 2, 2}, std::vector<uint8_t>(12)), "2 labels for 3 images"},
      {Idx({2, 5000, 2}, {}), "4096 pixels a side"},
      {"xy", "ends inside the IDX magic"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<LabelledImages> set = ReadLabelledImages(Write("i", c.bytes), labels);
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument) << c.error;
    EXPECT_THAT(set.status().message(), HasSubstr(c.error));
  }
  EXPECT_EQ(ReadLabelledImages((dir_ / "none").string(), labels).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ArgMaxTest, FirstLargest) {
  EXPECT_EQ(ArgMax<float>(std::vector<float>{1, 3, 3, 2}), 1);
  EXPECT_EQ(ArgMax<int>(std::vector<int>{-5}), 0);
  EXPECT_EQ(ArgMax<float>(std::vector<float>{}), -1);
}

}  // namespace
}  // namespace hgpipe::clients
