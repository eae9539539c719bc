#include "server/shared_memory_tensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;

class SharedMemoryTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = absl::StrCat("/hgpipe_tensors_test_", getpid());
    const int fd = shm_open(key_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 4096), 0);
    ASSERT_EQ(pwrite(fd, "hello, world", 12, 100), 12);
    close(fd);
    SharedMemoryRegions::Options o;
    o.allow_client_shm = true;
    regions_ = std::make_unique<SharedMemoryRegions>(o);
    ASSERT_TRUE(regions_->Register("in", key_, 0, 2048).ok());
    ASSERT_TRUE(regions_->Register("out", key_, 2048, 2048).ok());
  }
  void TearDown() override { shm_unlink(key_.c_str()); }

  static void Set(google::protobuf::Map<std::string, inference::InferParameter>* p,
                  const std::string& region, int64_t offset, int64_t size) {
    (*p)["shared_memory_region"].set_string_param(region);
    if (offset >= 0) (*p)["shared_memory_offset"].set_int64_param(offset);
    if (size >= 0) (*p)["shared_memory_byte_size"].set_int64_param(size);
  }

  std::string key_;
  std::unique_ptr<SharedMemoryRegions> regions_;
};

TEST_F(SharedMemoryTensorsTest, InputAndOutputResolve) {
  inference::ModelInferRequest req;
  Set(req.add_inputs()->mutable_parameters(), "in", 100, 12);
  auto* out = req.add_outputs();
  out->set_name("OUTPUT");
  Set(out->mutable_parameters(), "out", -1, 64);
  auto t = FindSharedMemoryTensors(req, regions_.get(), "m");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(t->input_bytes().has_value());
  EXPECT_EQ(*t->input_bytes(), "hello, world");
  EXPECT_TRUE(CheckSharedMemoryOutput(*t, 64, "m").ok());
  absl::Status small = CheckSharedMemoryOutput(*t, 65, "m");
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(small.message(), HasSubstr("cannot hold"));

  inference::ModelInferResponse resp;
  resp.add_outputs()->set_name("OUTPUT");
  resp.add_raw_output_contents()->assign("result!!");
  WriteSharedMemoryOutput(*t, &resp);
  EXPECT_TRUE(resp.raw_output_contents(0).empty());
  EXPECT_EQ(std::string(t->output->data, 8), "result!!");
  // The client sees it at the region's offset in its object.
  auto seen = regions_->Readable("in", 0, 1);  // same object, other region
  ASSERT_TRUE(seen.ok());
  auto back = regions_->Readable("out", 0, 8);
  EXPECT_EQ(std::string(back->data, 8), "result!!");
}

TEST_F(SharedMemoryTensorsTest, NoParametersNoSharedMemory) {
  inference::ModelInferRequest req;
  req.add_inputs()->set_name("INPUT");
  req.add_outputs()->set_name("OUTPUT");
  auto t = FindSharedMemoryTensors(req, nullptr, "m");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->input_bytes().has_value());
  EXPECT_FALSE(t->output.has_value());
  EXPECT_TRUE(CheckSharedMemoryOutput(*t, 1 << 20, "m").ok());
}

TEST_F(SharedMemoryTensorsTest, BadParameters) {
  using C = absl::StatusCode;
  auto code = [&](auto edit) {
    inference::ModelInferRequest req;
    auto* in = req.add_inputs();
    in->set_name("INPUT");
    edit(&req);
    return FindSharedMemoryTensors(req, regions_.get(), "m").status();
  };
  auto params = [](inference::ModelInferRequest* r) {
    return r->mutable_inputs(0)->mutable_parameters();
  };
  // No byte size.
  EXPECT_EQ(code([&](auto* r) { Set(params(r), "in", 0, -1); }).code(), C::kInvalidArgument);
  // Offset or size without a region.
  const absl::Status orphan =
      code([&](auto* r) { (*params(r))["shared_memory_offset"].set_int64_param(0); });
  EXPECT_EQ(orphan.code(), C::kInvalidArgument);
  EXPECT_EQ(orphan.message(),
            "model 'm': input 'INPUT': 'shared_memory_offset' without a 'shared_memory_region' "
            "parameter");
  EXPECT_EQ(
      code([&](auto* r) { (*params(r))["shared_memory_byte_size"].set_int64_param(4); }).code(),
      C::kInvalidArgument);
  // A region that is not a string; negative numbers.
  EXPECT_EQ(code([&](auto* r) {
              (*params(r))["shared_memory_region"].set_int64_param(3);
              (*params(r))["shared_memory_byte_size"].set_int64_param(4);
            }).code(),
            C::kInvalidArgument);
  const absl::Status negative = code([&](auto* r) {
    Set(params(r), "in", 0, 4);
    (*params(r))["shared_memory_offset"].set_int64_param(-5);
  });
  EXPECT_EQ(negative.code(), C::kInvalidArgument);
  // Which tensor, then what is wrong with it.
  EXPECT_EQ(negative.message(),
            "model 'm': input 'INPUT': parameter 'shared_memory_offset' must be an integer >= 0");
  EXPECT_EQ(code([&](auto* r) {
              Set(params(r), "in", 0, 4);
              (*params(r))["shared_memory_byte_size"].set_int64_param(-5);
            }).code(),
            C::kInvalidArgument);
  EXPECT_EQ(code([&](auto* r) {
              Set(params(r), "in", 0, 4);
              (*params(r))["shared_memory_byte_size"].set_string_param("4");
            }).code(),
            C::kInvalidArgument);
  // Unknown region; offset past the end; too large.
  absl::Status unknown = code([&](auto* r) { Set(params(r), "nope", 0, 4); });
  EXPECT_EQ(unknown.code(), C::kNotFound);
  EXPECT_THAT(unknown.message(), HasSubstr("'nope'"));
  EXPECT_THAT(unknown.message(), HasSubstr("input 'INPUT'"));
  EXPECT_EQ(code([&](auto* r) { Set(params(r), "in", 2048, 1); }).code(), C::kInvalidArgument);
  EXPECT_EQ(code([&](auto* r) { Set(params(r), "in", 2000, 49); }).code(), C::kInvalidArgument);
  // Without a registry.
  inference::ModelInferRequest req;
  Set(req.add_inputs()->mutable_parameters(), "in", 0, 4);
  EXPECT_EQ(FindSharedMemoryTensors(req, nullptr, "m").status().code(), C::kNotFound);
  // A classification output cannot go to shared memory.
  EXPECT_EQ(code([&](auto* r) {
              auto* o = r->add_outputs();
              o->set_name("OUTPUT");
              Set(o->mutable_parameters(), "out", 0, 64);
              (*o->mutable_parameters())["classification"].set_int64_param(3);
            }).code(),
            C::kInvalidArgument);
}

}  // namespace
}  // namespace hgpipe::server
