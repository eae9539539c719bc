#include "server/board_factory.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "base/mutex.h"
#include "server/model_repository.h"

namespace hgpipe::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BoardSpecTest, ParsesSimPoolXrtAndMixes) {
  auto s = ParseBoardSpec("sim:2");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->sim_per_model, 2u);
  EXPECT_EQ(s->sim_pool, 0u);
  EXPECT_TRUE(s->xrt_devices.empty());

  s = ParseBoardSpec("sim-pool:3");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->sim_pool, 3u);
  EXPECT_EQ(s->sim_per_model, 0u);
  EXPECT_TRUE(s->has_sim());
  EXPECT_FALSE(s->has_xrt());

  s = ParseBoardSpec("xrt:0,1");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(s->xrt_devices, ElementsAre("0", "1"));
  EXPECT_EQ(s->sim_per_model, 0u);

  s = ParseBoardSpec("xrt:0000:65:00.1, sim:1");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(s->xrt_devices, ElementsAre("0000:65:00.1"));
  EXPECT_EQ(s->sim_per_model, 1u);

  s = ParseBoardSpec("xrt:0,sim-pool:2");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(s->xrt_devices, ElementsAre("0"));
  EXPECT_EQ(s->sim_pool, 2u);

  s = ParseBoardSpec("xrt:all");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->xrt_all);
}

TEST(BoardSpecTest, RejectsNonsenseNamingTheItem) {
  for (const char* bad : {"", "sim:0", "sim:x", "sim:65", "gpu:1", "3", "xrt:", "sim-pool:0",
                          "sim-pool:", "pool:2", "sim:1,sim-pool:1"}) {
    auto s = ParseBoardSpec(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr("--boards")) << bad;
  }
  EXPECT_THAT(ParseBoardSpec("sim-pool:99").status().message(),
              HasSubstr("'sim-pool:99': N must be a number from 1 to 64"));
  EXPECT_THAT(ParseBoardSpec("sim:1,sim-pool:1").status().message(), HasSubstr("do not mix"));
}

TEST(EmulatedFaultsTest, ParsesFaultsByBoardName) {
  auto f = ParseEmulatedFaults("sim1=hang@100, sim2=fail@50:permanent,sim3=slow@10:x4");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->size(), 3u);
  EXPECT_EQ(f->at("sim1").kind, accel::FaultInjection::Kind::kHang);
  EXPECT_EQ(f->at("sim1").after_runs, 100u);
  EXPECT_EQ(f->at("sim2").kind, accel::FaultInjection::Kind::kFail);
  EXPECT_TRUE(f->at("sim2").permanent);
  EXPECT_EQ(f->at("sim3").kind, accel::FaultInjection::Kind::kSlow);
  EXPECT_EQ(f->at("sim3").slow_factor, 4);
  auto none = ParseEmulatedFaults("");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(EmulatedFaultsTest, ErrorsNameTheBadItem) {
  struct Case {
    const char* spec;
    const char* message;
  } cases[] = {
      {"sim1", "--emulated-faults: 'sim1' is not BOARD=FAULT"},
      {"=fail@1", "--emulated-faults: '=fail@1' is not BOARD=FAULT"},
      {"sim1=hang@1,sim2=explode@3", "--emulated-faults: 'sim2=explode@3': "},
      {"sim1=fail@x", "--emulated-faults: 'sim1=fail@x': "},
      {"sim1=fail@1,sim1=hang@2", "'sim1=hang@2': board sim1 named twice"},
  };
  for (const Case& c : cases) {
    auto f = ParseEmulatedFaults(c.spec);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_THAT(f.status().message(), HasSubstr(c.message)) << c.spec;
  }
}

class BoardFactoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    models_.resize(3);
    const char* names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; ++i) {
      models_[i].config.set_name(names[i]);
      models_[i].config.set_bitstream("verify");
      models_[i].config.mutable_batching()->set_max_images_per_run(8 + 8 * i);
      ASSERT_TRUE(ResolveEmulatedBitstream(&models_[i]).ok());
    }
  }
  std::vector<const ModelEntry*> Models(size_t n) {
    std::vector<const ModelEntry*> out;
    for (size_t i = 0; i < n; ++i) out.push_back(&models_[i]);
    return out;
  }
  BoardOptions Fast() {
    BoardOptions o;
    o.program_time = absl::Milliseconds(5);
    o.reset_time = absl::Milliseconds(5);
    return o;
  }
  // Runs one image in slot 0 of `b`; its outcome.
  static absl::Status RunOne(accel::Board& b) {
    hgpipe::Notification done;
    absl::Status result;
    b.Submit(0, 1, [&](absl::Status s) {
      result = s;
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    return result;
  }
  std::vector<ModelEntry> models_;
  RealClock clock_;
};

TEST_F(BoardFactoryTest, SimGivesEveryModelItsOwnBoardsWithUniqueNames) {
  BoardFactory f(*ParseBoardSpec("sim:2"), Fast(), &clock_);
  auto boards = f.CreateStartupBoards(Models(2));
  ASSERT_TRUE(boards.ok()) << boards.status();
  ASSERT_EQ(boards->per_model.size(), 2u);
  EXPECT_TRUE(boards->idle.empty());
  std::vector<std::string> names;
  for (size_t m = 0; m < 2; ++m) {
    ASSERT_EQ(boards->per_model[m].size(), 2u);
    for (const auto& b : boards->per_model[m]) {
      names.push_back(b->info().name);
      EXPECT_EQ(b->max_images_per_run(), models_[m].config.batching().max_images_per_run());
      EXPECT_EQ(b->manifest().name, "verify");
      // Default slots: the board's own, from the pipeline depth.
      EXPECT_GT(b->num_slots(), 2);
    }
  }
  EXPECT_THAT(names, ElementsAre("sim0", "sim1", "sim2", "sim3"));
  // A model loaded later gets two new boards, named on.
  auto later = f.CreateForModel(models_[2]);
  ASSERT_TRUE(later.ok()) << later.status();
  ASSERT_EQ(later->size(), 2u);
  EXPECT_EQ((*later)[0]->info().name, "sim4");
  EXPECT_EQ((*later)[1]->info().name, "sim5");
}

TEST_F(BoardFactoryTest, SimPoolDealsBoardsInTurnAndGivesLaterModelsNone) {
  BoardFactory f(*ParseBoardSpec("sim-pool:2"), Fast(), &clock_);
  auto boards = f.CreateStartupBoards(Models(3));
  ASSERT_TRUE(boards.ok()) << boards.status();
  ASSERT_EQ(boards->per_model.size(), 3u);
  ASSERT_EQ(boards->per_model[0].size(), 1u);
  ASSERT_EQ(boards->per_model[1].size(), 1u);
  EXPECT_TRUE(boards->per_model[2].empty());  // beyond N: by reprogramming
  EXPECT_TRUE(boards->idle.empty());
  EXPECT_EQ(boards->per_model[0][0]->info().name, "sim0");
  EXPECT_EQ(boards->per_model[1][0]->info().name, "sim1");
  // Pool boards are sized for the largest run of the models.
  EXPECT_EQ(boards->per_model[0][0]->max_images_per_run(), 24u);
  auto later = f.CreateForModel(models_[2]);
  ASSERT_TRUE(later.ok());
  EXPECT_TRUE(later->empty());

  BoardFactory g(*ParseBoardSpec("sim-pool:3"), Fast(), &clock_);
  auto two = g.CreateStartupBoards(Models(2));
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->per_model[0].size(), 2u);  // boards 0 and 2
  EXPECT_EQ(two->per_model[1].size(), 1u);
  EXPECT_EQ(two->per_model[0][1]->info().name, "sim2");

  BoardFactory h(*ParseBoardSpec("sim-pool:2"), Fast(), &clock_);
  auto none = h.CreateStartupBoards({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->idle.size(), 2u);
}

TEST_F(BoardFactoryTest, FaultsAndTimesReachTheNamedBoards) {
  BoardOptions o = Fast();
  o.faults = *ParseEmulatedFaults("sim1=fail@0");
  o.num_slots = 3;
  BoardFactory f(*ParseBoardSpec("sim:2"), o, &clock_);
  auto boards = f.CreateStartupBoards(Models(1));
  ASSERT_TRUE(boards.ok());
  accel::Board& healthy = *boards->per_model[0][0];
  accel::Board& faulty = *boards->per_model[0][1];
  EXPECT_EQ(healthy.num_slots(), 3);
  EXPECT_TRUE(RunOne(healthy).ok());
  EXPECT_EQ(RunOne(faulty).code(), absl::StatusCode::kUnavailable);

  BoardOptions p = Fast();
  p.faults = *ParseEmulatedFaults("sim1=fail@0,sim01=fail@0,gpu0=hang@1,sim3=hang@1");
  BoardFactory g(*ParseBoardSpec("sim:2"), p, &clock_);
  EXPECT_THAT(g.PendingFaults(), ElementsAre("gpu0", "sim01", "sim1", "sim3"));
  ASSERT_TRUE(g.CreateStartupBoards(Models(1)).ok());
  EXPECT_THAT(g.PendingFaults(), ElementsAre("gpu0", "sim01", "sim3"));
}

TEST_F(BoardFactoryTest, TimingOnlyBoardsAnswerWithoutComputing) {
  // The verify kernel's output is a digest of the input, never all zero for
  // this input; a timing-only board leaves the output zero.
  auto first_output = [&](BoardOptions o) {
    BoardFactory f(*ParseBoardSpec("sim:1"), o, &clock_);
    auto boards = f.CreateStartupBoards(Models(1));
    EXPECT_TRUE(boards.ok()) << boards.status();
    accel::Board& b = *boards->per_model[0][0];
    accel::RunSlotBuffers s = b.slot(0);
    for (size_t i = 0; i < s.input.size(); ++i) s.input[i] = static_cast<int8_t>(i * 7 + 1);
    absl::Status result = RunOne(b);
    EXPECT_TRUE(result.ok()) << result;
    return std::vector<uint32_t>(s.output.begin(), s.output.begin() + 4);
  };
  EXPECT_NE(first_output(Fast()), std::vector<uint32_t>(4, 0));
  BoardOptions timing_only = Fast();
  timing_only.compute = false;
  EXPECT_EQ(first_output(timing_only), std::vector<uint32_t>(4, 0));
}

TEST_F(BoardFactoryTest, BitstreamsNeedABoardKindThatRunsThem) {
  BoardFactory sim(*ParseBoardSpec("sim:1"), Fast(), &clock_);
  auto b = sim.MakeBitstream(models_[0]);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->kernel, models_[0].kernel);
  EXPECT_EQ((*b)->manifest.name, "verify");
  EXPECT_TRUE((*b)->xclbin_path.empty());

  BoardFactory xrt(*ParseBoardSpec("xrt:0"), Fast(), &clock_);
  models_[0].config_path = "repo/a/config.pbtxt";
  auto none = xrt.MakeBitstream(models_[0]);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("repo/a/config.pbtxt"));
  EXPECT_THAT(none.status().message(), HasSubstr("xclbin"));
  models_[0].directory = "/models/a";
  models_[0].config.set_xclbin("a.xclbin");
  auto with = xrt.MakeBitstream(models_[0]);
  ASSERT_TRUE(with.ok());
  EXPECT_EQ((*with)->xclbin_path, "/models/a/a.xclbin");
}

}  // namespace
}  // namespace hgpipe::server
