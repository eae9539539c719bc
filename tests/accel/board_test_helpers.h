// Helpers for tests that drive one board on a SimClock: a test's Fixture
// has `board` (a pointer to the Board) and `clock` (the SimClock).
#ifndef HGPIPE_TESTS_ACCEL_BOARD_TEST_HELPERS_H_
#define HGPIPE_TESTS_ACCEL_BOARD_TEST_HELPERS_H_

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::accel::board_test {

using ::testing::ElementsAre;

// Records callbacks in the order they arrive, by name.
struct Events {
  std::vector<std::string> names;
  std::vector<absl::Status> statuses;
  Board::DoneCallback Add(std::string name) {
    return [this, name = std::move(name)](absl::Status s) {
      names.push_back(name);
      statuses.push_back(std::move(s));
    };
  }
  absl::Status Of(const std::string& name) const {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return statuses[i];
    }
    return absl::UnknownError(absl::StrCat(name, " was not called"));
  }
  int Count(const std::string& name) const {
    return static_cast<int>(std::count(names.begin(), names.end(), name));
  }
};

// Resets the board and advances through the reset; expects done(OK).
template <typename Fixture>
void ResetBoard(Fixture& f) {
  Events e;
  f.board->Reset(e.Add("reset"));
  f.clock.Advance(absl::Milliseconds(200));  // the default reset_time
  ASSERT_THAT(e.names, ElementsAre("reset"));
  ASSERT_TRUE(e.statuses[0].ok()) << e.statuses[0];
}
// Programs the board and advances through the programming; expects `want`.
template <typename Fixture>
void ProgramBoard(Fixture& f, std::shared_ptr<const Bitstream> b,
                  absl::StatusCode want = absl::StatusCode::kOk) {
  Events e;
  f.board->Program(std::move(b), e.Add("program"));
  f.clock.Advance(absl::Seconds(1));  // the default program_time
  ASSERT_THAT(e.names, ElementsAre("program"));
  ASSERT_EQ(e.statuses[0].code(), want) << e.statuses[0];
}
// One 1-image run from slot 0, run to completion; its status.
template <typename Fixture>
absl::Status OneRun(Fixture& f) {
  Events e;
  f.board->Submit(0, 1, e.Add("run"));
  f.clock.RunUntilIdle();
  return e.Of("run");
}

}  // namespace hgpipe::accel::board_test

#endif  // HGPIPE_TESTS_ACCEL_BOARD_TEST_HELPERS_H_
