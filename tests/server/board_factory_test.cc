#include "server/board_factory.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/model_repository.h"

namespace hgpipe::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BoardSpecTest, ParsesSimXrtAndMixes) {
  auto s = ParseBoardSpec("sim:2");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->sim_per_model, 2u);
  EXPECT_TRUE(s->xrt_devices.empty());

  s = ParseBoardSpec("xrt:0,1");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(s->xrt_devices, ElementsAre("0", "1"));
  EXPECT_EQ(s->sim_per_model, 0u);

  s = ParseBoardSpec("xrt:0000:65:00.1, sim:1");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(s->xrt_devices, ElementsAre("0000:65:00.1"));
  EXPECT_EQ(s->sim_per_model, 1u);

  s = ParseBoardSpec("xrt:all");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->xrt_all);
}

TEST(BoardSpecTest, RejectsNonsenseNamingTheItem) {
  for (const char* bad : {"", "sim:0", "sim:x", "sim:65", "gpu:1", "3", "xrt:"}) {
    auto s = ParseBoardSpec(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr("--boards")) << bad;
  }
}

TEST(CreateBoardsTest, SimGivesEveryModelItsOwnBoardsWithUniqueNames) {
  std::vector<ModelEntry> models(2);
  for (int i = 0; i < 2; ++i) {
    models[i].config.set_name(i == 0 ? "a" : "b");
    models[i].config.set_bitstream("verify");
    models[i].config.mutable_batching()->set_max_images_per_run(16);
    ASSERT_TRUE(ResolveEmulatedBitstream(&models[i]).ok());
  }
  RealClock clock;
  auto boards = CreateBoards(*ParseBoardSpec("sim:2"), models, {}, &clock);
  ASSERT_TRUE(boards.ok()) << boards.status();
  ASSERT_EQ(boards->size(), 2u);
  std::vector<std::string> names;
  for (const auto& per_model : *boards) {
    ASSERT_EQ(per_model.size(), 2u);
    for (const auto& b : per_model) {
      names.push_back(b->info().name);
      EXPECT_EQ(b->max_images_per_run(), 16u);
      EXPECT_EQ(b->manifest().name, "verify");
    }
  }
  EXPECT_THAT(names, ElementsAre("sim0", "sim1", "sim2", "sim3"));
}

}  // namespace
}  // namespace hgpipe::server
