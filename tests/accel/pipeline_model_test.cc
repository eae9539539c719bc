#include "accel/pipeline_model.h"

#include "gtest/gtest.h"

namespace hgpipe::accel {
namespace {

constexpr size_t kImageBytes = 196 * 768;

// Cycles at HG-PIPE's 425 MHz as an exact absl::Duration.
absl::Duration Cycles(uint64_t c) { return absl::Seconds(static_cast<double>(c) / 425e6); }

PipelineTiming NoOverhead() {
  PipelineTiming t;
  t.run_overhead = absl::ZeroDuration();
  return t;
}

TEST(PipelineModelTest, FirstResultAfterTheFullPipelineLatency) {
  PipelineModel m(NoOverhead(), kImageBytes);
  const absl::Time t0 = absl::UnixEpoch();
  const RunTimes r = m.Submit(t0, 1);
  EXPECT_EQ(r.input_start, t0);
  EXPECT_EQ(r.first_output - t0, Cycles(816'584));
  EXPECT_EQ(r.done, r.first_output);
  // 816,584 cycles at 425 MHz is 1.92 ms.
  EXPECT_NEAR(absl::ToDoubleMilliseconds(r.done - t0), 1.9214, 1e-3);
}

TEST(PipelineModelTest, ARunStreamsOneImagePerInterval) {
  PipelineModel m(NoOverhead(), kImageBytes);
  const absl::Time t0 = absl::UnixEpoch();
  const RunTimes r = m.Submit(t0, 100);
  EXPECT_EQ(r.input_end - r.input_start, Cycles(57'624) * 100);
  EXPECT_EQ(r.done - r.input_start, Cycles(57'624) * 99 + Cycles(816'584));
  // Steady state: 1/II = 7,375 images/s.
  EXPECT_NEAR(100 / absl::ToDoubleSeconds(r.input_end - r.input_start),
              NoOverhead().max_images_per_second(), 0.01);
  EXPECT_NEAR(NoOverhead().max_images_per_second(), 7375.4, 0.1);
}

TEST(PipelineModelTest, BackToBackRunsOverlapInsideThePipeline) {
  PipelineModel m(NoOverhead(), kImageBytes);
  const absl::Time t0 = absl::UnixEpoch();
  const RunTimes a = m.Submit(t0, 10);
  // Queued while `a` still streams: its input follows a's with no gap.
  const RunTimes b = m.Submit(t0 + absl::Microseconds(100), 10);
  EXPECT_EQ(b.input_start, a.input_end);
  // b's first image is in the pipeline long before a's last result is out.
  EXPECT_LT(b.input_start, a.done);
  EXPECT_EQ(b.done - a.done, Cycles(57'624) * 10);
}

TEST(PipelineModelTest, AnIdleGapIsABubble) {
  PipelineModel m(NoOverhead(), kImageBytes);
  const absl::Time t0 = absl::UnixEpoch();
  const RunTimes a = m.Submit(t0, 10);
  const absl::Time late = a.input_end + absl::Milliseconds(5);
  const RunTimes b = m.Submit(late, 10);
  EXPECT_EQ(b.input_start, late);
  EXPECT_EQ(b.done - a.done, absl::Milliseconds(5) + Cycles(57'624) * 10);
}

TEST(PipelineModelTest, RunOverheadDelaysAnIdleBoardOnly) {
  PipelineTiming t;
  t.run_overhead = absl::Microseconds(50);
  PipelineModel m(t, kImageBytes);
  const absl::Time t0 = absl::UnixEpoch();
  const RunTimes a = m.Submit(t0, 20);
  EXPECT_EQ(a.input_start, t0 + absl::Microseconds(50));
  const RunTimes b = m.Submit(t0 + absl::Microseconds(60), 1);
  EXPECT_EQ(b.input_start, a.input_end);  // hidden behind a's input
}

TEST(PipelineModelTest, SlowHostLinkLimitsTheInputStream) {
  PipelineTiming t = NoOverhead();
  t.link_bytes_per_second = 0.5e9;  // 150,528 B takes 301 us > II
  PipelineModel m(t, kImageBytes);
  const RunTimes r = m.Submit(absl::UnixEpoch(), 10);
  EXPECT_NEAR(absl::ToDoubleMicroseconds(r.input_end - r.input_start), 10 * 150528 / 0.5e9 * 1e6,
              0.01);
}

TEST(PipelineModelTest, PredictDoesNotRecord) {
  PipelineModel m(NoOverhead(), kImageBytes);
  const RunTimes p = m.Predict(absl::UnixEpoch(), 5);
  EXPECT_EQ(m.input_free_at(), absl::InfinitePast());
  const RunTimes r = m.Submit(absl::UnixEpoch(), 5);
  EXPECT_EQ(p.done, r.done);
  EXPECT_EQ(m.input_free_at(), r.input_end);
}

// A run cut short (its last images not sent) or not sent at all gives its
// input time back; time already promised to a later run is never freed.
TEST(PipelineModelTest, TakeBackFreesTheInputEarlierNeverLater) {
  PipelineModel m(NoOverhead(), kImageBytes);
  const absl::Time t0 = absl::UnixEpoch();
  const RunTimes a = m.Submit(t0, 10);
  const RunTimes b = m.Submit(t0, 4);
  m.TakeBack(b.input_end - m.InputTime(3));  // b sends one image
  EXPECT_EQ(m.input_free_at(), b.input_start + m.image_time());
  EXPECT_EQ(m.Submit(t0, 2).input_start, b.input_start + m.image_time());
  m.TakeBack(a.input_end + absl::Hours(1));  // not later than recorded
  EXPECT_EQ(m.input_free_at(), b.input_start + m.image_time() + m.InputTime(2));
  m.TakeBack(absl::InfinitePast());  // nothing planned any more: idle
  EXPECT_EQ(m.Submit(t0 + absl::Microseconds(7), 1).input_start, t0 + absl::Microseconds(7));
}

TEST(PipelineTimingTest, ValidateRejectsNonsense) {
  PipelineTiming t;
  EXPECT_TRUE(t.Validate().ok());
  t.interval_cycles = 0;
  EXPECT_FALSE(t.Validate().ok());
  t = PipelineTiming();
  t.latency_cycles = t.interval_cycles - 1;
  EXPECT_FALSE(t.Validate().ok());
  t = PipelineTiming();
  t.clock_hz = 0;
  EXPECT_FALSE(t.Validate().ok());
  EXPECT_NEAR(PipelineTiming().pipeline_depth(), 14.17, 0.01);
}

}  // namespace
}  // namespace hgpipe::accel
