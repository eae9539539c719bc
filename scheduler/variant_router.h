// Routing between a model's bitstream variants under deadlines
// (docs/scheduling.md, "Variants"). Each variant of a model is a scheduler
// model of its own (its bitstream, its boards, its queue); the router is
// what clients reach. For each request it picks the most accurate variant
// whose measured top-1 is at least the request's floor and whose predicted
// completion (Scheduler::PredictCompletion) meets the request's deadline.
// It never answers below the floor: a floor no variant reaches is
// InvalidArgument naming the best available; when no acceptable variant can
// meet the deadline the request goes to the one predicted to finish first,
// and the scheduler refuses it (DEADLINE_EXCEEDED) if that too is late.
//
// Boards follow demand. The router measures the images/s its requests bring
// and the lowest floor they accept, and shifts boards between variants
// (Scheduler::MoveBoard: drain, reprogram, probe) so that the accepted
// variants' capacity covers the demand with the least accuracy given up:
// towards faster variants when demand passes `grow_utilization` of the
// capacity, back towards accurate ones only once demand has stayed below
// `shrink_utilization` of what the more accurate split would offer for
// `shrink_hold` while no board moves, and at most one move per
// `min_move_interval`. Demand is smoothed over `demand_horizon`. The gap
// between the two thresholds, the smoothing, the hold and the interval are
// the hysteresis: a board is not moved back and forth by demand that
// wobbles around one threshold.
//
// Thread safety: all methods are thread-safe.
#ifndef HGPIPE_SCHEDULER_VARIANT_ROUTER_H_
#define HGPIPE_SCHEDULER_VARIANT_ROUTER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "scheduler/scheduler.h"

namespace hgpipe::scheduler {

struct RoutedVariant {
  std::string name;              // e.g. "full", "skip2", "taylor"
  ModelHandle scheduler_model;   // the scheduler model that runs it
  double top1 = 0;               // measured top-1, a fraction in (0, 1]
  double images_per_second = 0;  // one board's capacity (1 / interval)
};

// OK if a variant of `model` whose best top-1 is `best_top1` (variant
// `best_name`) reaches `floor`; else the InvalidArgument every path answers
// (the router, and the server before any work), naming the best available.
absl::Status CheckAccuracyFloor(absl::string_view model, double floor, absl::string_view best_name,
                                double best_top1);

// The pure part of the choice, for tests and the planner: variants ranked
// by accuracy, the first whose predicted completion meets `deadline`.
struct RouteCandidate {
  int variant;  // index into the router's variants
  double top1;
  absl::Time predicted;  // InfiniteFuture: cannot serve now
};
// `candidates` in any order, all already above the floor. Returns the index
// (into `candidates`) of the most accurate that meets the deadline, else of
// the one predicted to finish first; -1 if empty.
int ChooseVariant(const std::vector<RouteCandidate>& candidates, absl::Time deadline);

// Boards per variant (in the router's order) that give at least
// `needed_images_per_second` with the least accuracy given up: all on the
// most accurate accepted variant, then one board at a time to the move with
// the most capacity gained per point of accuracy lost. Variants with `top1`
// below `floor` get none. If even the fastest split falls short it is
// returned.
std::vector<int> SplitBoards(const std::vector<RoutedVariant>& variants, int boards, double floor,
                             double needed_images_per_second);

class VariantRouter {
 public:
  struct Options {
    std::string model;  // for messages
    // At least one; every top1 > 0, images_per_second > 0 and
    // scheduler_model valid.
    std::vector<RoutedVariant> variants;
    Scheduler* scheduler = nullptr;  // required; must outlive the router
    Clock* clock = nullptr;          // required; must outlive the router
    // Whether to move boards between the variants as demand moves.
    bool move_boards = true;
    // Demand is measured over windows of this length and smoothed
    // exponentially with time constant `demand_horizon`, so that one
    // window's burst or lull (Poisson arrivals: a 250 ms window of 300
    // requests varies by about 6 % either way) does not move a board.
    absl::Duration demand_window = absl::Milliseconds(250);
    absl::Duration demand_horizon = absl::Seconds(2);
    absl::Duration min_move_interval = absl::Seconds(1);
    double grow_utilization = 0.9;
    double shrink_utilization = 0.7;
    // A board moves back towards accuracy only once demand has stayed below
    // the shrink threshold this long, with no board of the model moving
    // (draining, programming, probing): a move takes a board out for its
    // whole reprogramming, so giving capacity back is never hurried. A
    // board recovering from a failure (Scheduler::BoardStatus::recovering)
    // is not a move and does not hold the others.
    absl::Duration shrink_hold = absl::Seconds(5);
  };

  static absl::StatusOr<std::unique_ptr<VariantRouter>> Create(Options options);

  // Routes and queues `request`. `min_top1`: the request's accuracy floor
  // (a fraction); none: the most accurate variant only. Returns the index
  // of the variant it was queued on (request->Done is then called exactly
  // once), or the error to answer with (Done is not called):
  // InvalidArgument when no variant reaches the floor, or the scheduler's
  // Enqueue error.
  absl::StatusOr<int> Enqueue(std::unique_ptr<InferRequest> request,
                              std::optional<double> min_top1);
  // The choice Enqueue makes, for a caller that must know the variant
  // before queueing (its completion decodes with the variant's scales): the
  // variant's index (the caller then queues the request on its
  // scheduler_model), or InvalidArgument when no variant reaches the floor.
  // Counts the request's demand, as Enqueue does.
  absl::StatusOr<int> Choose(uint32_t images, uint32_t priority, absl::Time deadline,
                             std::optional<double> min_top1);

  const std::vector<RoutedVariant>& variants() const { return options_.variants; }
  // Boards moved between variants so far.
  uint64_t moves() const;

 private:
  explicit VariantRouter(Options options);
  // Counts demand and, at most once per min_move_interval, moves a board.
  void NoteDemand(uint32_t images, double floor) ABSL_LOCKS_EXCLUDED(mu_);
  void MaybeMoveBoard(double rate, double floor) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  // The variants' indices, most accurate first.
  std::vector<int> ranked_;

  mutable hgpipe::Mutex mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_);
  uint64_t window_images_ ABSL_GUARDED_BY(mu_) = 0;
  // The smoothed demand, images/s (negative: no window closed yet).
  double demand_ ABSL_GUARDED_BY(mu_) = -1;
  // Since when a move back towards accuracy has been called for
  // (InfiniteFuture: it is not).
  absl::Time shrink_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  double window_floor_ ABSL_GUARDED_BY(mu_) = 1;
  absl::Time last_move_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool moving_ ABSL_GUARDED_BY(mu_) = false;
  // Per variant: its last board is to move once its queue has emptied, so
  // no request is routed to it meanwhile.
  std::vector<bool> leaving_ ABSL_GUARDED_BY(mu_);
  uint64_t moves_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_VARIANT_ROUTER_H_
