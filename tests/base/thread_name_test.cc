#include "base/thread_name.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace hgpipe {
namespace {

TEST(ThreadNameTest, NamesTheCallingThreadOnlyAndCutsLongNames) {
  const std::string mine = ThisThreadName();
  std::string named, cut;
  std::thread([&] {
    NameThisThread("hgpipe-clock");
    named = ThisThreadName();
    NameThisThread("a-name-longer-than-fifteen-bytes");
    cut = ThisThreadName();
  }).join();
  EXPECT_EQ(named, "hgpipe-clock");
  EXPECT_EQ(cut, "a-name-longer-t");
  EXPECT_EQ(ThisThreadName(), mine);
}

}  // namespace
}  // namespace hgpipe
