#include "server/model_manager.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "accel/verify_digest.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace hgpipe::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class ModelManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("hgpipe-manager-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    Write("a", R"(name: "a" bitstream: "verify")");
    Write("b", R"(name: "b" bitstream: "verify" batching { priority_levels: 2 })");
  }
  void TearDown() override {
    manager_.reset();
    if (scheduler_ != nullptr) scheduler_->Shutdown();
    scheduler_.reset();
    fs::remove_all(root_);
  }
  void Write(const std::string& model, const std::string& text) {
    fs::create_directories(root_ / model);
    std::ofstream(root_ / model / "config.pbtxt") << text;
  }
  void Start(ModelManager::ControlMode mode, const std::string& boards) {
    scheduler::Scheduler::Options so;
    so.clock = &clock_;
    so.observer = &metrics_;
    scheduler_ = *scheduler::Scheduler::Create(so);
    BoardOptions bo;
    bo.program_time = absl::Milliseconds(20);
    bo.reset_time = absl::Milliseconds(5);
    factory_ = std::make_unique<BoardFactory>(*ParseBoardSpec(boards), bo, &clock_);
    ModelManager::Options o;
    o.repository = root_.string();
    o.control_mode = mode;
    o.scheduler = scheduler_.get();
    o.metrics = &metrics_;
    o.boards = factory_.get();
    manager_ = std::make_unique<ModelManager>(std::move(o));
  }
  absl::Status Load(const std::string& name) {
    hgpipe::Notification n;
    absl::Status result;
    manager_->Load(name, [&](absl::Status s) {
      result = s;
      n.Notify();
    });
    EXPECT_TRUE(n.WaitForNotificationWithTimeout(absl::Seconds(120)));
    return result;
  }
  absl::Status Unload(const std::string& name) {
    hgpipe::Notification n;
    absl::Status result;
    manager_->Unload(name, [&](absl::Status s) {
      result = s;
      n.Notify();
    });
    EXPECT_TRUE(n.WaitForNotificationWithTimeout(absl::Seconds(120)));
    return result;
  }
  // "name state reason" per model.
  std::vector<std::string> Index() {
    auto index = manager_->Index(false);
    EXPECT_TRUE(index.ok()) << index.status();
    std::vector<std::string> out;
    for (const auto& e : *index) {
      out.push_back(absl::StrCat(e.name, " ", e.version, " ", e.state, e.reason.empty() ? "" : " ",
                                 e.reason));
    }
    return out;
  }
  // One verify image through the scheduler, checked against its digest.
  absl::Status Infer(const std::string& name) {
    auto ref = manager_->Find(name, "");
    if (!ref.ok()) return ref.status();
    const accel::DeviceGeometry& g = ref->model->entry.manifest.geometry;
    std::vector<int8_t> image(g.input_bytes());
    for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<int8_t>(i * 7 + name[0]);
    std::vector<int32_t> logits(g.classes), want(g.classes);
    verify::ExpectedLogits(image.data(), image.size(), g.classes, want.data());
    hgpipe::Notification n;
    absl::Status result;
    auto r = std::make_unique<scheduler::BufferRequest>();
    r->images = image.data();
    r->n_images = 1;
    r->logits = logits.data();
    r->done = [&](absl::Status s) {
      result = s;
      n.Notify();
    };
    absl::Status s = scheduler_->Enqueue(ref->model->handle, std::move(r));
    ref->admission.reset();
    if (!s.ok()) return s;
    EXPECT_TRUE(n.WaitForNotificationWithTimeout(absl::Seconds(120)));
    if (result.ok() && logits != want) return absl::DataLossError("wrong logits");
    return result;
  }

  // Whether board `id` reaches `phase` within a minute (the removal of an
  // unloaded load's boards happens on the loader's thread, after the answer).
  bool WaitForPhase(int id, scheduler::BoardPhase phase) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      std::vector<scheduler::Scheduler::BoardStatus> boards = scheduler_->Boards();
      if (id < static_cast<int>(boards.size()) && boards[id].phase == phase) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  fs::path root_;
  RealClock clock_;
  Metrics metrics_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::unique_ptr<BoardFactory> factory_;
  std::unique_ptr<ModelManager> manager_;
};

TEST_F(ModelManagerTest, ModeNoneLoadsEverythingAndRefusesControl) {
  Start(ModelManager::ControlMode::kNone, "sim:1");
  ASSERT_TRUE(manager_->LoadAtStartup({}).ok());
  EXPECT_THAT(manager_->LoadedNames(), ::testing::ElementsAre("a", "b"));
  EXPECT_TRUE(manager_->AllReady());
  EXPECT_TRUE(Infer("a").ok());
  absl::Status s = Load("a");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("--model-control-mode=explicit"));
  EXPECT_EQ(Unload("a").code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(manager_->Find("a", "").ok());
}

TEST_F(ModelManagerTest, ModeNoneNeedsAModel) {
  fs::remove_all(root_);
  fs::create_directories(root_);
  Start(ModelManager::ControlMode::kNone, "sim:1");
  absl::Status s = manager_->LoadAtStartup({});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("no model"));
}

TEST_F(ModelManagerTest, ExplicitLoadUnloadAndReloadOnAPoolBoard) {
  Start(ModelManager::ControlMode::kExplicit, "sim-pool:1");
  ASSERT_TRUE(manager_->LoadAtStartup({"a"}).ok());
  EXPECT_THAT(Index(), ::testing::ElementsAre("a 1 READY", "b 1 UNAVAILABLE not loaded"));
  EXPECT_EQ(manager_->Find("b", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(*manager_->ModelReady("b", ""));  // in the repository
  EXPECT_EQ(manager_->ModelReady("zz", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->Find("a", "2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Infer("a").ok());

  // b has no board: the pool board is reprogrammed for it.
  ASSERT_TRUE(Load("b").ok());
  EXPECT_THAT(Index(), ::testing::ElementsAre("a 1 READY", "b 1 READY"));
  EXPECT_TRUE(*manager_->ModelReady("b", ""));
  EXPECT_TRUE(Infer("b").ok());
  EXPECT_TRUE(Infer("a").ok());  // and back

  ASSERT_TRUE(Unload("a").ok());
  EXPECT_EQ(manager_->Find("a", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Index(), ::testing::ElementsAre("a 1 UNAVAILABLE unloaded", "b 1 READY"));
  EXPECT_EQ(Unload("a").code(), absl::StatusCode::kNotFound);
  // A pool board outlives the models it served.
  for (const auto& board : scheduler_->Boards()) {
    EXPECT_NE(board.phase, scheduler::BoardPhase::kRemoved) << board.name;
  }

  // Reload b: a new load takes over.
  const int old_id = manager_->Find("b", "")->model->model_id();
  ASSERT_TRUE(Load("b").ok());
  auto b = manager_->Find("b", "");
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->model->model_id(), old_id);
  b->admission.reset();
  EXPECT_TRUE(Infer("b").ok());

  // Load a again.
  ASSERT_TRUE(Load("a").ok());
  EXPECT_TRUE(Infer("a").ok());
}

TEST_F(ModelManagerTest, FailedLoadsAreReportedAndAFailedReloadKeepsTheModel) {
  Start(ModelManager::ControlMode::kExplicit, "sim:1");
  ASSERT_TRUE(manager_->LoadAtStartup({}).ok());
  EXPECT_TRUE(manager_->LoadedNames().empty());
  EXPECT_EQ(Load("nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Load("../a").code(), absl::StatusCode::kNotFound);
  Write("c", R"(name: "c" bitstream: "verify" batching { priority_levels: 99 })");
  absl::Status s = Load("c");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("c/config.pbtxt: batching.priority_levels"));
  auto index = manager_->Index(false);
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->size(), 3u);
  EXPECT_EQ((*index)[2].state, "UNAVAILABLE");
  EXPECT_THAT((*index)[2].reason, HasSubstr("batching.priority_levels"));

  ASSERT_TRUE(Load("a").ok());
  EXPECT_EQ(manager_->Index(true)->size(), 1u);  // ready only
  Write("a", R"(name: "a" bitstream: "nope")");
  EXPECT_FALSE(Load("a").ok());
  EXPECT_TRUE(manager_->Find("a", "").ok());  // the loaded one stays
  EXPECT_TRUE(Infer("a").ok());
}

TEST_F(ModelManagerTest, UnloadWaitsForAcceptedRequests) {
  Start(ModelManager::ControlMode::kExplicit, "sim:1");
  ASSERT_TRUE(manager_->LoadAtStartup({"a"}).ok());
  // A request found but not yet handed to the scheduler holds the model.
  auto held = manager_->Find("a", "");
  ASSERT_TRUE(held.ok());
  hgpipe::Notification unloaded;
  manager_->Unload("a", [&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    unloaded.Notify();
  });
  EXPECT_EQ(manager_->Find("a", "").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Index(), ::testing::Contains("a 1 UNLOADING"));
  EXPECT_FALSE(unloaded.HasBeenNotified());
  // The held request still gets in, and is answered.
  const accel::DeviceGeometry& g = held->model->entry.manifest.geometry;
  std::vector<int8_t> image(g.input_bytes(), 3);
  std::vector<int32_t> logits(g.classes);
  hgpipe::Notification answered;
  auto r = std::make_unique<scheduler::BufferRequest>();
  r->images = image.data();
  r->n_images = 1;
  r->logits = logits.data();
  r->done = [&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    answered.Notify();
  };
  ASSERT_TRUE(scheduler_->Enqueue(held->model->handle, std::move(r)).ok());
  held->admission.reset();
  EXPECT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(120)));
  EXPECT_TRUE(unloaded.WaitForNotificationWithTimeout(absl::Seconds(120)));
  EXPECT_EQ(manager_->Find("a", "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelManagerTest, ReloadsAndUnloadsRemoveTheBoardsMadeForThem) {
  using scheduler::BoardPhase;
  Start(ModelManager::ControlMode::kExplicit, "sim:1");
  ASSERT_TRUE(manager_->LoadAtStartup({"a"}).ok());
  ASSERT_TRUE(Infer("a").ok());
  // A reload brings its own board; the old load's goes once it drained.
  ASSERT_TRUE(Load("a").ok());
  ASSERT_TRUE(Infer("a").ok());
  EXPECT_TRUE(WaitForPhase(0, BoardPhase::kRemoved));
  EXPECT_EQ(scheduler_->Boards()[1].phase, BoardPhase::kServing);
  ASSERT_TRUE(Unload("a").ok());
  EXPECT_TRUE(WaitForPhase(1, BoardPhase::kRemoved));
  ASSERT_TRUE(Load("a").ok());
  ASSERT_TRUE(Infer("a").ok());
  std::vector<scheduler::Scheduler::BoardStatus> boards = scheduler_->Boards();
  ASSERT_EQ(boards.size(), 3u);
  EXPECT_EQ(boards[0].phase, BoardPhase::kRemoved);
  EXPECT_EQ(boards[1].phase, BoardPhase::kRemoved);
  EXPECT_EQ(boards[2].phase, BoardPhase::kServing);
  EXPECT_EQ(boards[2].name, "sim2");
  // The removed boards' series are gone from /metrics too.
  const std::string text = prometheus::TextSerializer().Serialize(metrics_.registry()->Collect());
  EXPECT_THAT(text, Not(HasSubstr(R"(board="sim0")")));
  EXPECT_THAT(text, Not(HasSubstr(R"(board="sim1")")));
  EXPECT_THAT(text, HasSubstr(R"(board="sim2")"));
}

TEST(SchedulerModelOptionsTest, MapsTheBatchingConfig) {
  ModelEntry e;
  e.config.set_name("m");
  auto* b = e.config.mutable_batching();
  b->set_max_images_per_run(16);
  b->set_max_queue_delay_us(250);
  b->set_max_queue_images(100);
  b->set_priority_levels(3);
  b->set_default_priority_level(2);
  b->set_max_starvation_us(7000);
  b->set_low_priority_run_images(5);
  auto bitstream = std::make_shared<accel::Bitstream>();
  scheduler::ModelOptions o = SchedulerModelOptions(e, bitstream);
  EXPECT_EQ(o.name, "m");
  EXPECT_EQ(o.bitstream, bitstream);
  EXPECT_EQ(o.max_images_per_run, 16u);
  EXPECT_EQ(o.max_queue_delay, absl::Microseconds(250));
  EXPECT_EQ(o.max_queue_images, 100u);
  EXPECT_EQ(o.priority_levels, 3u);
  EXPECT_EQ(o.default_priority, 2u);
  EXPECT_EQ(o.max_starvation, absl::Microseconds(7000));
  EXPECT_EQ(o.low_priority_run_images, 5u);
  EXPECT_EQ(ModelManager::ParseControlMode("explicit").value(),
            ModelManager::ControlMode::kExplicit);
  EXPECT_EQ(ModelManager::ParseControlMode("poll").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hgpipe::server
