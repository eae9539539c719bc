#include "plan/variant_plan.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hgpipe::plan {
namespace {

TEST(ParseVariantsTest, SortedMostAccurateFirstWithTheirTiming) {
  auto v = ParseVariants("fast:top1=0.8:ii_cycles=19208:latency_cycles=400000,full:top1=0.9");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->size(), 2u);
  EXPECT_EQ((*v)[0].name, "full");
  EXPECT_EQ((*v)[0].timing.interval_cycles, accel::PipelineTiming{}.interval_cycles);
  EXPECT_EQ((*v)[1].name, "fast");
  EXPECT_EQ((*v)[1].timing.interval_cycles, 19208u);
  EXPECT_EQ((*v)[1].timing.latency_cycles, 400000u);
  EXPECT_DOUBLE_EQ((*v)[1].top1, 0.8);
}

TEST(ParseVariantsTest, BadItemsAreNamed) {
  struct Case {
    const char* spec;
    const char* want;
  };
  for (const Case& c : std::vector<Case>{
           {"full", "variant 'full': top1 in (0, 1] is required"},
           {"full:top1=2", "top1 in (0, 1]"},
           {"full:top1=0.9:ii=3", "unknown key 'ii'"},
           {"full:top1=x", "top1=x is not a number"},
           {"a:top1=0.9,a:top1=0.8", "appears twice"},
           {"", "no variants"},
       }) {
    auto v = ParseVariants(c.spec);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_NE(v.status().message().find(c.want), std::string::npos)
        << c.spec << ": " << v.status().message();
  }
  EXPECT_FALSE(ParseVariantPolicy("queue").ok());
  EXPECT_EQ(*ParseVariantPolicy("reject"), VariantPolicy::kReject);
}

// Target mode: the fewest boards that answer the goodput target. Twice one
// full board's capacity with a 3x faster variant above the floor fits on
// one board under `variants` (after a move) and needs two under `reject`.
TEST(PlanVariantsTest, TargetModeAnswersTheFewestBoards) {
  VariantTarget t;
  t.variants = *ParseVariants("full:top1=0.9,fast:top1=0.88:ii_cycles=19208");
  const double full = t.variants[0].timing.max_images_per_second();
  t.rate = 1.6 * full;
  t.deadline = absl::Milliseconds(5);
  t.min_accuracy = 0.85;
  t.goodput = 0.95;
  t.model.program_time = absl::Milliseconds(20);
  t.model.min_move_interval = absl::Milliseconds(50);
  PlanOptions o;
  o.max_boards = 4;
  o.simulation.duration = absl::Seconds(1.5);
  o.simulation.warmup = absl::Milliseconds(500);
  o.simulation.scheduler.dispatch_lead = absl::Microseconds(100);
  auto v = PlanVariants(t, o);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->boards, 1) << VariantPlanAnswerToJson(t, *v);
  ASSERT_FALSE(v->tried.empty());
  EXPECT_GT(v->tried.back().result.requests_by_variant.at("fast"), 0u);

  t.policy = VariantPolicy::kReject;
  auto r = PlanVariants(t, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->boards, 2) << VariantPlanAnswerToJson(t, *r);
  EXPECT_EQ(r->tried.back().result.requests_by_variant.at("full"),
            r->tried.back().result.requests_ok);
  const std::string json = VariantPlanAnswerToJson(t, *r);
  for (const char* key : {"\"goodput\":", "\"mean_accuracy\":", "\"boards\":2", "\"mix\":"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
  }

  t.min_accuracy = 0.95;
  EXPECT_NE(PlanVariants(t, o).status().message().find("the best available is 'full'"),
            std::string::npos);
}

}  // namespace
}  // namespace hgpipe::plan
