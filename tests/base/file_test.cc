#include "base/file.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe {
namespace {

using ::testing::HasSubstr;

TEST(FileTest, WrittenBytesReadBackWhole) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/hgpipe-file-", getpid());
  const std::string bytes = std::string("a\0b", 3) + std::string(100'000, 'x');
  ASSERT_TRUE(WriteWholeFile(path, bytes).ok());
  absl::StatusOr<std::string> read = ReadWholeFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);
  std::remove(path.c_str());
}

TEST(FileTest, MissingFilesAndDirectoriesAreErrorsNamingThePath) {
  absl::StatusOr<std::string> missing = ReadWholeFile("/nonexistent/x.bin");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/x.bin"));
  // A directory opens as a stream; reading it would throw.
  const std::string dir = ::testing::TempDir();
  absl::StatusOr<std::string> directory = ReadWholeFile(dir);
  EXPECT_TRUE(absl::IsInvalidArgument(directory.status()));
  EXPECT_THAT(directory.status().message(), HasSubstr("is a directory"));
  EXPECT_FALSE(WriteWholeFile("/nonexistent/x.bin", "x").ok());
}

}  // namespace
}  // namespace hgpipe
