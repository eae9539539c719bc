#include "scheduler/run_sizing.h"

#include <vector>

#include "gtest/gtest.h"

namespace hgpipe::scheduler {
namespace {

const absl::Time t0 = absl::FromUnixSeconds(1000);

// A board with a free slot whose next image completes at t0 + done_us, one
// image every image_us on its input.
BoardView Board(int64_t done_us, int64_t image_us = 100, uint32_t max_run = 64,
                int64_t input_free_us = 0) {
  BoardView v;
  v.free_slot = true;
  v.input_free_at = t0 + absl::Microseconds(input_free_us);
  v.next_done = t0 + absl::Microseconds(done_us);
  v.image_time = absl::Microseconds(image_us);
  v.max_run = max_run;
  return v;
}

BoardView Full(BoardView v) {
  v.free_slot = false;
  return v;
}

TEST(ChooseBoardTest, PicksTheReadyBoardWhoseImageCompletesFirst) {
  std::vector<BoardView> b = {Board(300), Board(200), Board(250)};
  const BoardChoice c = ChooseBoard(b, t0, absl::Milliseconds(1));
  EXPECT_EQ(c.best, 1);
  EXPECT_EQ(c.best_done, t0 + absl::Microseconds(200));
  EXPECT_EQ(c.next_ready, absl::InfiniteFuture());
}

TEST(ChooseBoardTest, BoardsWithoutAFreeSlotTakeNoPart) {
  std::vector<BoardView> b = {Full(Board(100, 100, 64, 5000)), Board(400)};
  const BoardChoice c = ChooseBoard(b, t0, absl::Milliseconds(1));
  EXPECT_EQ(c.best, 1);
  // The full board's input end does not count either: its completion
  // dispatches again.
  EXPECT_EQ(c.next_ready, absl::InfiniteFuture());
}

TEST(ChooseBoardTest, ABusyBoardIsReadyWithinTheLeadOfItsInputEnd) {
  // Input free 3 ms from now, lead 1 ms: ready at t0 + 2 ms.
  std::vector<BoardView> b = {Board(100, 100, 64, 3000)};
  BoardChoice c = ChooseBoard(b, t0, absl::Milliseconds(1));
  EXPECT_EQ(c.best, -1);
  EXPECT_EQ(c.best_done, absl::InfiniteFuture());
  EXPECT_EQ(c.next_ready, t0 + absl::Milliseconds(2));
  c = ChooseBoard(b, t0 + absl::Milliseconds(2), absl::Milliseconds(1));
  EXPECT_EQ(c.best, 0);
}

TEST(ChooseBoardTest, NextReadyIsTheEarliestBusyBoard) {
  std::vector<BoardView> b = {Board(100, 100, 64, 5000), Board(100, 100, 64, 2500), Board(900)};
  const BoardChoice c = ChooseBoard(b, t0, absl::Milliseconds(1));
  EXPECT_EQ(c.best, 2);
  EXPECT_EQ(c.next_ready, t0 + absl::Microseconds(1500));
}

TEST(ChooseBoardTest, NoBoards) {
  const BoardChoice c = ChooseBoard({}, t0, absl::Milliseconds(1));
  EXPECT_EQ(c.best, -1);
  EXPECT_EQ(c.next_ready, absl::InfiniteFuture());
}

TEST(RunSizeTest, ALoneBoardTakesUpToEachCap) {
  std::vector<BoardView> b = {Board(0, 100, 16)};
  EXPECT_EQ(RunSize(b, 0, 5, 64), 5u);     // what is queued
  EXPECT_EQ(RunSize(b, 0, 100, 64), 16u);  // the board's max_run
  EXPECT_EQ(RunSize(b, 0, 100, 8), 8u);    // the model's max_images_per_run
  EXPECT_EQ(RunSize(b, 0, 0, 8), 0u);
}

TEST(RunSizeTest, IdenticalIdleBoardsSplitABurst) {
  std::vector<BoardView> b = {Board(0), Board(0), Board(0), Board(0)};
  EXPECT_EQ(RunSize(b, 0, 8, 64), 2u);
  EXPECT_EQ(RunSize(b, 0, 4, 64), 1u);
  EXPECT_EQ(RunSize(b, 0, 9, 64), 3u);  // ties go to the board choosing
}

TEST(RunSizeTest, WaterFillingAgainstALaterBoard) {
  // A completes images at 0, 100, 200, ... us; B at 250, 350, ... The first
  // ten completions are A0 A100 A200 B250 A300 B350 A400 B450 A500 B550:
  // six for A.
  std::vector<BoardView> b = {Board(0), Board(250)};
  EXPECT_EQ(RunSize(b, 0, 10, 64), 6u);
  // Alone, A would take all ten.
  EXPECT_EQ(RunSize(std::vector<BoardView>{Board(0)}, 0, 10, 64), 10u);
  // B without a free slot does not count.
  b[1] = Full(b[1]);
  EXPECT_EQ(RunSize(b, 0, 10, 64), 10u);
}

TEST(RunSizeTest, ASlowerBoardTakesFewerImages) {
  // B starts with A but takes 300 us per image: A's images 0..5 complete at
  // 0..500, B's at 0, 300 (strictly earlier than A's only from A's 400 on).
  std::vector<BoardView> b = {Board(0, 100), Board(0, 300)};
  // queued 8: A takes i while i + earlier(i) < 8: i=5 -> 5 + ceil(500/300)=2
  // = 7 < 8; i=6 -> 6 + 2 = 8: no. Six for A, two for B.
  EXPECT_EQ(RunSize(b, 0, 8, 64), 6u);
  EXPECT_EQ(RunSize(b, 1, 8, 64), 2u);
}

TEST(RunSizeTest, NothingWhenAnotherBoardCompletesTheNextImageSooner) {
  std::vector<BoardView> b = {Board(500), Board(0)};
  EXPECT_EQ(RunSize(b, 0, 1, 64), 0u);
  // With more queued, the later board still gets a share: before A's image
  // i (at 500 + 100i us) B completes i + 5 images, so A takes i while
  // i + (i + 5) < 12: four images.
  EXPECT_EQ(RunSize(b, 0, 12, 64), 4u);
}

TEST(RunSizeTest, BoardsBeyondTheRunHorizonAreIgnored) {
  // B's first completion comes after A's whole capped run.
  std::vector<BoardView> b = {Board(0, 100, 4), Board(1000)};
  EXPECT_EQ(RunSize(b, 0, 100, 64), 4u);
}

TEST(EstimateCompletionTest, WithoutBoardsOneBoardFromStart) {
  const absl::Time t =
      EstimateCompletion(5, t0, {}, absl::Microseconds(100), absl::Milliseconds(2));
  EXPECT_EQ(t, t0 + absl::Microseconds(400) + absl::Milliseconds(2));
}

TEST(EstimateCompletionTest, SpreadOverBoardsFromTheFirstFree) {
  std::vector<absl::Time> free = {t0 + absl::Microseconds(300), t0 + absl::Microseconds(100)};
  // Seven images over two boards: four rounds, from the first input free.
  const absl::Time t =
      EstimateCompletion(7, t0, free, absl::Microseconds(100), absl::Milliseconds(2));
  EXPECT_EQ(t, t0 + absl::Microseconds(100) + absl::Microseconds(300) + absl::Milliseconds(2));
}

TEST(EstimateCompletionTest, NoBoardStartsBeforeStart) {
  std::vector<absl::Time> free = {t0 - absl::Seconds(1)};
  const absl::Time start = t0 + absl::Microseconds(50);
  EXPECT_EQ(EstimateCompletion(1, start, free, absl::Microseconds(100), absl::Milliseconds(2)),
            start + absl::Milliseconds(2));
}

}  // namespace
}  // namespace hgpipe::scheduler
