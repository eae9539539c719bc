#include "server/shared_memory_regions.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;

// A POSIX shared memory object of `size` bytes holding 0, 1, 2, ... (mod
// 251), as a client creates one; unlinked at the end.
class ShmObject {
 public:
  explicit ShmObject(size_t size, mode_t mode = 0600) {
    static std::atomic<int> counter{0};
    key_ = absl::StrCat("/hgpipe_test_", getpid(), "_", counter.fetch_add(1));
    const int fd = shm_open(key_.c_str(), O_RDWR | O_CREAT | O_EXCL, mode);
    EXPECT_GE(fd, 0) << key_;
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    std::vector<char> bytes(size);
    for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i % 251);
    EXPECT_EQ(pwrite(fd, bytes.data(), size, 0), static_cast<ssize_t>(size));
    fd_ = fd;
  }
  ~ShmObject() {
    close(fd_);
    shm_unlink(key_.c_str());
  }
  const std::string& key() const { return key_; }
  void Truncate(size_t size) { EXPECT_EQ(ftruncate(fd_, static_cast<off_t>(size)), 0); }
  char At(size_t offset) const {
    char c = 0;
    EXPECT_EQ(pread(fd_, &c, 1, static_cast<off_t>(offset)), 1);
    return c;
  }

 private:
  std::string key_;
  int fd_ = -1;
};

SharedMemoryRegions::Options Allowed() {
  SharedMemoryRegions::Options o;
  o.allow_client_shm = true;
  return o;
}

// Whether this process maps the object `key` (the kernel's own account).
bool Mapped(const std::string& key) {
  std::ifstream maps("/proc/self/maps");
  std::stringstream all;
  all << maps.rdbuf();
  return all.str().find(absl::StrCat("/dev/shm", key)) != std::string::npos;
}

TEST(SharedMemoryRegionsTest, RegisterReadWriteStatusUnregister) {
  ShmObject obj(10000);
  SharedMemoryRegions regions(Allowed());
  // An offset that is not page-aligned: mmap needs aligned ones, clients don't.
  ASSERT_TRUE(regions.Register("in", obj.key(), 4100, 5000).ok());
  auto v = regions.Readable("in", 10, 20);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->size, 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(v->data[i], static_cast<char>((4110 + i) % 251));

  auto w = regions.Writable("in", 100, 4);
  ASSERT_TRUE(w.ok()) << w.status();
  std::memcpy(w->data, "abcd", 4);
  EXPECT_EQ(obj.At(4200), 'a');
  EXPECT_EQ(obj.At(4203), 'd');

  auto status = regions.Status("");
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->size(), 1u);
  EXPECT_EQ((*status)[0].name, "in");
  EXPECT_EQ((*status)[0].key, obj.key());
  EXPECT_EQ((*status)[0].offset, 4100u);
  EXPECT_EQ((*status)[0].byte_size, 5000u);
  EXPECT_TRUE(regions.Status("in").ok());
  EXPECT_EQ(regions.Status("nope").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(regions.Unregister("in").ok());
  EXPECT_EQ(regions.size(), 0u);
  EXPECT_EQ(regions.Readable("in", 0, 1).status().code(), absl::StatusCode::kNotFound);
  // Unknown names unregister fine, as in Triton.
  EXPECT_TRUE(regions.Unregister("in").ok());
}

TEST(SharedMemoryRegionsTest, DoubleRegisterIsAlreadyExists) {
  ShmObject obj(4096);
  SharedMemoryRegions regions(Allowed());
  ASSERT_TRUE(regions.Register("r", obj.key(), 0, 4096).ok());
  absl::Status again = regions.Register("r", obj.key(), 0, 1024);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.message(), HasSubstr("'r'"));
  // The first registration is untouched.
  EXPECT_EQ(regions.Status("r")->at(0).byte_size, 4096u);
  // The same object under another name is fine.
  EXPECT_TRUE(regions.Register("r2", obj.key(), 1024, 1024).ok());
}

TEST(SharedMemoryRegionsTest, BadNamesKeysAndSizes) {
  ShmObject obj(4096);
  SharedMemoryRegions regions(Allowed());
  auto code = [&](const std::string& name, const std::string& key, uint64_t offset, uint64_t size) {
    return regions.Register(name, key, offset, size).code();
  };
  using C = absl::StatusCode;
  EXPECT_EQ(code("", obj.key(), 0, 16), C::kInvalidArgument);
  EXPECT_EQ(code(std::string(300, 'n'), obj.key(), 0, 16), C::kInvalidArgument);
  const std::vector<std::string> bad_keys = {
      "", "/", "/a/b", "../etc/passwd", "/..", ".", std::string("a\0b", 3)};
  for (const std::string& key : bad_keys) {
    EXPECT_EQ(code("r", key, 0, 16), C::kInvalidArgument) << key;
  }
  EXPECT_EQ(code("r", std::string("/") + std::string(300, 'k'), 0, 16), C::kInvalidArgument);
  EXPECT_EQ(code("r", "/hgpipe_test_no_such_object", 0, 16), C::kNotFound);
  EXPECT_EQ(code("r", obj.key(), 0, 0), C::kInvalidArgument);
  EXPECT_EQ(code("r", obj.key(), 0, 4097), C::kInvalidArgument);
  EXPECT_EQ(code("r", obj.key(), 4096, 1), C::kInvalidArgument);
  EXPECT_EQ(code("r", obj.key(), 5000, 16), C::kInvalidArgument);
  // offset + byte_size overflows 64 bits: must not wrap around to "fits".
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(code("r", obj.key(), 16, max - 8), C::kInvalidArgument);
  EXPECT_EQ(code("r", obj.key(), max, 16), C::kInvalidArgument);
  EXPECT_EQ(regions.size(), 0u);
  // A key without the leading '/' is what shm_open accepts too.
  EXPECT_TRUE(regions.Register("ok", obj.key().substr(1), 0, 4096).ok());
}

TEST(SharedMemoryRegionsTest, RangesPastTheRegionAreInvalid) {
  ShmObject obj(8192);
  SharedMemoryRegions regions(Allowed());
  ASSERT_TRUE(regions.Register("r", obj.key(), 1000, 2000).ok());
  using C = absl::StatusCode;
  EXPECT_TRUE(regions.Readable("r", 0, 2000).ok());
  EXPECT_TRUE(regions.Readable("r", 1999, 1).ok());
  EXPECT_EQ(regions.Readable("r", 2000, 1).status().code(), C::kInvalidArgument);
  EXPECT_EQ(regions.Readable("r", 0, 2001).status().code(), C::kInvalidArgument);
  EXPECT_EQ(regions.Readable("r", 1500, 501).status().code(), C::kInvalidArgument);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(regions.Readable("r", 10, max - 5).status().code(), C::kInvalidArgument);
  EXPECT_EQ(regions.Writable("r", max, 1).status().code(), C::kInvalidArgument);
  absl::Status past = regions.Readable("r", 5000, 10).status();
  EXPECT_THAT(past.message(), HasSubstr("past its end"));
  EXPECT_EQ(regions.Readable("other", 0, 1).status().code(), C::kNotFound);
}

TEST(SharedMemoryRegionsTest, ShrunkObjectIsRefusedNotRead) {
  ShmObject obj(3 * 4096);
  SharedMemoryRegions regions(Allowed());
  ASSERT_TRUE(regions.Register("r", obj.key(), 0, 3 * 4096).ok());
  obj.Truncate(4096);  // the pages past 4096 would now fault (SIGBUS)
  EXPECT_TRUE(regions.Readable("r", 0, 4096).ok());
  absl::Status s = regions.Readable("r", 4096, 4096).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("shrunk"));
}

// The client shrinks its object after the server took its views (the
// check at Readable/Writable passed): reading and writing past the new end
// would raise SIGBUS. The server survives, the views say so, and the region
// refuses every later view.
TEST(SharedMemoryRegionsTest, ShrinkWhileInUseIsCaughtNotFatal) {
  ShmObject obj(3 * 4096);
  SharedMemoryRegions regions(Allowed());
  ASSERT_TRUE(regions.Register("r", obj.key(), 0, 3 * 4096).ok());
  absl::StatusOr<SharedMemoryRegions::View> in = regions.Readable("r", 0, 3 * 4096);
  absl::StatusOr<SharedMemoryRegions::View> out = regions.Writable("r", 4096, 2 * 4096);
  ASSERT_TRUE(in.ok() && out.ok());
  EXPECT_FALSE(in->faulted());
  obj.Truncate(4096);
  // Read all of it: the first page is the object's, the rest zeros.
  uint64_t sum = 0;
  for (size_t i = 0; i < in->size; ++i) sum += static_cast<unsigned char>(in->data[i]);
  uint64_t first_page = 0;
  for (size_t i = 0; i < 4096; ++i) first_page += i % 251;
  EXPECT_EQ(sum, first_page);
  EXPECT_TRUE(in->faulted());
  std::memset(out->data, 7, out->size);  // lost: nothing to write to
  EXPECT_TRUE(out->faulted());
  absl::Status again = regions.Readable("r", 0, 16).status();
  EXPECT_EQ(again.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(again.message(), HasSubstr("shrank while the server used it"));
  // Registered again, on the object as it is now, it serves.
  ASSERT_TRUE(regions.Unregister("r").ok());
  ASSERT_TRUE(regions.Register("r", obj.key(), 0, 4096).ok());
  absl::StatusOr<SharedMemoryRegions::View> fresh = regions.Readable("r", 0, 4096);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->data[5], 5);
  EXPECT_FALSE(fresh->faulted());
}

// A SIGBUS that is not on a guarded mapping still ends the process.
TEST(SharedMemoryRegionsDeathTest, ASigbusElsewhereStillKills) {
  ShmObject guarded(4096);
  SharedMemoryRegions regions(Allowed());
  ASSERT_TRUE(regions.Register("r", guarded.key(), 0, 4096).ok());  // the handler is in
  ShmObject other(2 * 4096);
  // SIGBUS without a sanitizer; a sanitizer's own report (and exit 1)
  // with one: either way, not the exit(0) after the read.
  EXPECT_EXIT(
      {
        const int fd = shm_open(other.key().c_str(), O_RDWR, 0);
        char* p = static_cast<char*>(mmap(nullptr, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0));
        other.Truncate(0);
        volatile char c = p[4096];
        (void)c;
        std::exit(0);
      },
      [](int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }, "");
}

TEST(SharedMemoryRegionsTest, UnregisterWhileInUseKeepsTheMappingUntilReleased) {
  ShmObject obj(4096);
  SharedMemoryRegions regions(Allowed());
  ASSERT_TRUE(regions.Register("r", obj.key(), 0, 4096).ok());
  auto in_use = regions.Readable("r", 0, 4096);
  ASSERT_TRUE(in_use.ok());
  ASSERT_TRUE(regions.Unregister("r").ok());
  // Gone from the registry (and its name free again)...
  EXPECT_EQ(regions.Readable("r", 0, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(regions.size(), 0u);
  // ...but the request's view still reads the object's bytes.
  EXPECT_TRUE(Mapped(obj.key()));
  for (size_t i = 0; i < 4096; i += 512) EXPECT_EQ(in_use->data[i], static_cast<char>(i % 251));
  ShmObject other(4096);
  ASSERT_TRUE(regions.Register("r", other.key(), 0, 4096).ok());
  // The last holder lets go: unmapped.
  *in_use = SharedMemoryRegions::View{};
  EXPECT_FALSE(Mapped(obj.key()));
  EXPECT_TRUE(Mapped(other.key()));
  ASSERT_TRUE(regions.Unregister("").ok());
  EXPECT_FALSE(Mapped(other.key()));
}

TEST(SharedMemoryRegionsTest, ReadOnlyObjectTakesInputsNotOutputs) {
  if (geteuid() == 0) GTEST_SKIP() << "root opens any object read-write";
  ShmObject obj(4096, 0400);
  SharedMemoryRegions regions(Allowed());
  ASSERT_TRUE(regions.Register("r", obj.key(), 0, 4096).ok());
  EXPECT_TRUE(regions.Readable("r", 0, 16).ok());
  absl::Status s = regions.Writable("r", 0, 16).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("only read"));
}

TEST(SharedMemoryRegionsTest, DisabledByDefault) {
  ShmObject obj(4096);
  SharedMemoryRegions regions(SharedMemoryRegions::Options{});
  absl::Status s = regions.Register("r", obj.key(), 0, 4096);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("--allow-client-shm"));
  EXPECT_EQ(regions.Unregister("").code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(regions.Status("")->empty());
}

TEST(SharedMemoryRegionsTest, RegionCountIsBounded) {
  ShmObject obj(4096);
  SharedMemoryRegions::Options o = Allowed();
  o.max_regions = 3;
  SharedMemoryRegions regions(o);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(regions.Register(absl::StrCat("r", i), obj.key(), 0, 64).ok());
  }
  EXPECT_EQ(regions.Register("r3", obj.key(), 0, 64).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(regions.Unregister("r0").ok());
  EXPECT_TRUE(regions.Register("r3", obj.key(), 0, 64).ok());
}

// Requests take and drop views while regions come and go: no view ever
// reads unmapped memory (ASan/TSan builds check the accesses and the
// registry's locking).
TEST(SharedMemoryRegionsTest, ConcurrentUseAndUnregister) {
  ShmObject obj(4096);
  SharedMemoryRegions regions(Allowed());
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto v = regions.Readable("r", 0, 4096);
        if (!v.ok()) continue;
        int64_t sum = 0;
        for (size_t i = 0; i < v->size; i += 64) sum += v->data[i];
        if (sum != 0) reads.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 200 || reads.load() == 0; ++i) {
    (void)regions.Register("r", obj.key(), 0, 4096);
    ASSERT_TRUE(regions.Unregister("r").ok());
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace hgpipe::server
