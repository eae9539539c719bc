#include "server/metrics.h"

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace hgpipe::server {
namespace {

using scheduler::BoardPhase;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Text(const Metrics& m) {
  return prometheus::TextSerializer().Serialize(m.registry()->Collect());
}

// The sample `name{labels}`, or -1 if absent.
double Value(const std::string& text, const std::string& name, const std::string& labels) {
  const std::string key = absl::StrCat(name, "{", labels, "} ");
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, key)) {
      double v;
      if (absl::SimpleAtod(line.substr(key.size()), &v)) return v;
    }
  }
  return -1;
}

TEST(IdTableTest, GetsWhatWasSetAndNothingElse) {
  IdTable<int> t;
  int a = 1, b = 2;
  EXPECT_EQ(t.Get(0), nullptr);
  EXPECT_TRUE(t.Set(0, &a));
  EXPECT_TRUE(t.Set(300, &b));  // another chunk
  EXPECT_EQ(t.Get(0), &a);
  EXPECT_EQ(t.Get(300), &b);
  EXPECT_EQ(t.Get(1), nullptr);
  EXPECT_EQ(t.Get(-1), nullptr);
  EXPECT_EQ(t.Get(IdTable<int>::kCapacity), nullptr);
  EXPECT_FALSE(t.Set(IdTable<int>::kCapacity, &a));
}

TEST(MetricsTest, RequestsRunsAndExpiriesAreCountedPerModelAndBoard) {
  Metrics m;
  m.AddModel(0, "verify");
  m.AddBoard(0, "sim0");
  m.BoardPhaseChanged(0, 0, BoardPhase::kServing, absl::OkStatus(), {});
  m.RequestDone(0, absl::StatusCode::kOk, 3, absl::Milliseconds(2));
  m.RequestDone(0, absl::StatusCode::kDeadlineExceeded, 2, absl::Milliseconds(2));
  m.RequestDone(Metrics::kUnknownModel, absl::StatusCode::kNotFound, 0, absl::Milliseconds(1));
  const absl::Duration waits[] = {absl::Microseconds(10), absl::Microseconds(20)};
  m.RunStarted(0, 0, 2, waits, absl::Microseconds(300));
  m.RunFinished(0, 0, 2, absl::Milliseconds(2), absl::OkStatus());
  m.DeadlineExpired(0, 4);
  m.LateResultsDropped(0, 2);
  m.FillsSkipped(0, 3);
  m.FillsSkipped(0, 2);
  m.ImagesWithheld(0, 4);
  m.QueueDepth(0, 7);
  const std::string t = Text(m);
  EXPECT_EQ(Value(t, "hgpipe_requests_total", R"(code="OK",model="verify")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_requests_total", R"(code="DEADLINE_EXCEEDED",model="verify")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_requests_total", R"(code="NOT_FOUND",model="_unknown")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_images_total", R"(model="verify")"), 3);
  EXPECT_EQ(Value(t, "hgpipe_deadline_expired_requests_total", R"(model="verify")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_deadline_expired_images_total", R"(model="verify")"), 4);
  EXPECT_EQ(Value(t, "hgpipe_late_results_dropped_images_total", R"(model="verify")"), 2);
  EXPECT_EQ(Value(t, "hgpipe_skipped_fill_images_total", R"(model="verify")"), 5);
  EXPECT_EQ(Value(t, "hgpipe_withheld_images_total", R"(model="verify")"), 4);
  EXPECT_EQ(Value(t, "hgpipe_queue_images", R"(model="verify")"), 7);
  const std::string l = R"(board="sim0",model="verify")";
  EXPECT_EQ(Value(t, "hgpipe_board_images_total", l), 2);
  EXPECT_EQ(Value(t, "hgpipe_board_runs_total", l), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_images_in_flight", l), 0);
  EXPECT_EQ(Value(t, "hgpipe_board_healthy", l), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_phase", R"(board="sim0",phase="serving")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_phase", R"(board="sim0",phase="idle")"), 0);
}

TEST(MetricsTest, FailureRecoveryAndReprogrammingShowInPhasesAndCounters) {
  Metrics m;
  m.AddModel(0, "a");
  m.AddModel(1, "b");
  m.AddBoard(0, "sim0");
  m.BoardPhaseChanged(0, 0, BoardPhase::kServing, absl::OkStatus(), {});
  const absl::Duration waits[] = {absl::Microseconds(10)};
  m.RunStarted(0, 0, 1, waits, absl::Microseconds(100));
  // A hang caught by the watchdog: the run is abandoned, never finished.
  // The counters follow the scheduler's counts, which move with the phases.
  m.BoardPhaseChanged(0, 0, BoardPhase::kRecovering,
                      absl::DeadlineExceededError("board sim0: a run is late"), {1, 0, 0});
  std::string t = Text(m);
  const std::string la = R"(board="sim0",model="a")";
  EXPECT_EQ(Value(t, "hgpipe_board_failures_total", R"(board="sim0")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_healthy", la), 0);
  EXPECT_EQ(Value(t, "hgpipe_board_images_in_flight", la), 0);
  EXPECT_EQ(Value(t, "hgpipe_board_phase", R"(board="sim0",phase="recovering")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_phase", R"(board="sim0",phase="serving")"), 0);
  // Reset, reprogrammed, probed, re-admitted.
  m.BoardPhaseChanged(0, 0, BoardPhase::kProgramming, absl::OkStatus(), {1, 0, 0});
  m.BoardPhaseChanged(0, 0, BoardPhase::kProbing, absl::OkStatus(), {1, 0, 1});
  m.BoardPhaseChanged(0, 0, BoardPhase::kServing, absl::OkStatus(), {1, 1, 1});
  t = Text(m);
  EXPECT_EQ(Value(t, "hgpipe_board_recoveries_total", R"(board="sim0")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_programmings_total", R"(board="sim0")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_healthy", la), 1);

  // Given to model b: drained, programmed, probed, serving b.
  m.BoardPhaseChanged(0, 1, BoardPhase::kDraining, absl::OkStatus(), {1, 1, 1});
  m.RunFinished(0, 0, 1, absl::Milliseconds(1), absl::OkStatus());  // a's last run
  m.BoardPhaseChanged(0, 1, BoardPhase::kProgramming, absl::OkStatus(), {1, 1, 1});
  m.BoardPhaseChanged(0, 1, BoardPhase::kProbing, absl::OkStatus(), {1, 1, 2});
  m.BoardPhaseChanged(0, 1, BoardPhase::kServing, absl::OkStatus(), {1, 1, 2});
  m.RunStarted(1, 0, 1, waits, absl::Microseconds(100));
  m.RunFinished(1, 0, 1, absl::Milliseconds(1), absl::OkStatus());
  t = Text(m);
  const std::string lb = R"(board="sim0",model="b")";
  EXPECT_EQ(Value(t, "hgpipe_board_programmings_total", R"(board="sim0")"), 2);
  EXPECT_EQ(Value(t, "hgpipe_board_recoveries_total", R"(board="sim0")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_healthy", lb), 1);
  // No stale 0 for the model the board left (it would look unhealthy).
  EXPECT_THAT(t, Not(HasSubstr(absl::StrCat("hgpipe_board_healthy{", la))));
  // Counters of both models stay.
  EXPECT_EQ(Value(t, "hgpipe_board_images_total", la), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_images_total", lb), 1);

  // Idle: no model, no healthy series; retired after a failure.
  m.BoardPhaseChanged(0, -1, BoardPhase::kIdle, absl::OkStatus(), {1, 1, 2});
  t = Text(m);
  EXPECT_THAT(t, Not(HasSubstr("hgpipe_board_healthy{")));
  EXPECT_EQ(Value(t, "hgpipe_board_phase", R"(board="sim0",phase="idle")"), 1);
  m.BoardPhaseChanged(0, 1, BoardPhase::kRetired, absl::UnavailableError("dead"), {2, 1, 2});
  t = Text(m);
  EXPECT_EQ(Value(t, "hgpipe_board_healthy", lb), 0);
  EXPECT_EQ(Value(t, "hgpipe_board_failures_total", R"(board="sim0")"), 2);
  // Events come from several threads: an older count arriving late changes
  // nothing, nor does the same count again.
  m.BoardPhaseChanged(0, 1, BoardPhase::kRetired, absl::UnavailableError("dead"), {1, 1, 1});
  m.BoardPhaseChanged(0, 1, BoardPhase::kRetired, absl::UnavailableError("dead"), {2, 1, 2});
  t = Text(m);
  EXPECT_EQ(Value(t, "hgpipe_board_failures_total", R"(board="sim0")"), 2);
  EXPECT_EQ(Value(t, "hgpipe_board_programmings_total", R"(board="sim0")"), 2);
}

TEST(MetricsTest, ARemovedBoardLeavesNoSeriesAndTheOthersStay) {
  Metrics m;
  m.AddModel(0, "verify");
  m.AddBoard(0, "sim0");
  m.AddBoard(1, "sim1");
  const absl::Duration waits[] = {absl::Microseconds(10)};
  for (int b = 0; b < 2; ++b) {
    m.BoardPhaseChanged(b, 0, BoardPhase::kServing, absl::OkStatus(), {});
    m.RunStarted(0, b, 1, waits, absl::Microseconds(100));
    m.RunFinished(0, b, 1, absl::Milliseconds(1), absl::OkStatus());
  }
  m.BoardPhaseChanged(0, -1, BoardPhase::kIdle, absl::OkStatus(), {});
  m.BoardPhaseChanged(0, -1, BoardPhase::kRemoved, absl::OkStatus(), {});
  // Late or stray reports about the removed board are ignored.
  m.BoardPhaseChanged(0, -1, BoardPhase::kIdle, absl::OkStatus(), {});
  m.RunFinished(0, 0, 1, absl::Milliseconds(1), absl::OkStatus());
  const std::string t = Text(m);
  EXPECT_THAT(t, Not(HasSubstr(R"(board="sim0")")));
  EXPECT_EQ(Value(t, "hgpipe_board_images_total", R"(board="sim1",model="verify")"), 1);
  EXPECT_EQ(Value(t, "hgpipe_board_phase", R"(board="sim1",phase="serving")"), 1);
  EXPECT_THAT(t, Not(HasSubstr(R"(phase="removed")")));
}

TEST(MetricsTest, ModelsAndBoardsAddedWhileServing) {
  Metrics m;
  m.AddModel(0, "a");
  m.AddBoard(0, "sim0");
  m.BoardPhaseChanged(0, 0, BoardPhase::kServing, absl::OkStatus(), {});
  std::atomic<bool> stop{false};
  std::thread hot([&] {
    const absl::Duration waits[] = {absl::Microseconds(1)};
    while (!stop.load()) {
      m.RunStarted(0, 0, 1, waits, absl::Microseconds(1));
      m.RunFinished(0, 0, 1, absl::Microseconds(1), absl::OkStatus());
      m.RequestDone(0, absl::StatusCode::kOk, 1, absl::Microseconds(1));
      m.RequestDone(5, absl::StatusCode::kOk, 1, absl::Microseconds(1));
    }
  });
  for (int i = 1; i < 40; ++i) {
    m.AddModel(i, absl::StrCat("m", i));
    m.AddBoard(i, absl::StrCat("sim", i));
    m.BoardPhaseChanged(i, i, BoardPhase::kServing, absl::OkStatus(), {});
  }
  stop.store(true);
  hot.join();
  const std::string t = Text(m);
  EXPECT_EQ(Value(t, "hgpipe_board_healthy", R"(board="sim39",model="m39")"), 1);
  EXPECT_GT(Value(t, "hgpipe_images_total", R"(model="m5")"), -1);
  // A reload: a new id with the same name shares the series.
  m.AddModel(40, "a");
  m.RequestDone(40, absl::StatusCode::kOk, 2, absl::Microseconds(1));
  EXPECT_EQ(Value(Text(m), "hgpipe_images_total", R"(model="a")"),
            Value(t, "hgpipe_images_total", R"(model="a")") + 2);
}

}  // namespace
}  // namespace hgpipe::server
