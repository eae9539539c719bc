#include "scheduler/variant_router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hgpipe::scheduler {
namespace {

double Capacity(const std::vector<RoutedVariant>& variants, const std::vector<int>& split) {
  double c = 0;
  for (size_t i = 0; i < variants.size(); ++i) c += split[i] * variants[i].images_per_second;
  return c;
}

// Board states that count as a variant's: serving it or on their way to it.
bool Counts(BoardPhase phase) {
  return phase != BoardPhase::kRetired && phase != BoardPhase::kRemoved &&
         phase != BoardPhase::kIdle;
}

}  // namespace

absl::Status CheckAccuracyFloor(absl::string_view model, double floor, absl::string_view best_name,
                                double best_top1) {
  if (floor <= best_top1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "model %s: no variant reaches the minimum accuracy %.4f; the best available is '%s' with "
      "top-1 %.4f",
      model, floor, best_name, best_top1));
}

int ChooseVariant(const std::vector<RouteCandidate>& candidates, absl::Time deadline) {
  int best = -1;
  int earliest = -1;
  for (int i = 0; i < static_cast<int>(candidates.size()); ++i) {
    const RouteCandidate& c = candidates[i];
    if (earliest < 0 || c.predicted < candidates[earliest].predicted) earliest = i;
    if (c.predicted <= deadline && c.predicted != absl::InfiniteFuture() &&
        (best < 0 || c.top1 > candidates[best].top1)) {
      best = i;
    }
  }
  return best >= 0 ? best : earliest;
}

std::vector<int> SplitBoards(const std::vector<RoutedVariant>& variants, int boards, double floor,
                             double needed) {
  std::vector<int> split(variants.size(), 0);
  int top = -1;
  for (int i = 0; i < static_cast<int>(variants.size()); ++i) {
    if (variants[i].top1 >= floor && (top < 0 || variants[i].top1 > variants[top].top1)) {
      top = i;
    }
  }
  if (top < 0 || boards <= 0) return split;
  split[top] = boards;
  while (Capacity(variants, split) < needed) {
    // The move with the most capacity per accuracy given up.
    int from = -1, to = -1;
    double best = 0;
    for (int i = 0; i < static_cast<int>(variants.size()); ++i) {
      if (split[i] == 0) continue;
      for (int j = 0; j < static_cast<int>(variants.size()); ++j) {
        if (variants[j].top1 < floor) continue;
        const double gain = variants[j].images_per_second - variants[i].images_per_second;
        if (gain <= 0) continue;
        const double loss = std::max(variants[i].top1 - variants[j].top1, 1e-6);
        if (gain / loss > best) {
          best = gain / loss;
          from = i;
          to = j;
        }
      }
    }
    if (from < 0) break;
    --split[from];
    ++split[to];
  }
  return split;
}

absl::StatusOr<std::unique_ptr<VariantRouter>> VariantRouter::Create(Options options) {
  if (options.scheduler == nullptr || options.clock == nullptr) {
    return absl::InvalidArgumentError("variant router: scheduler and clock are required");
  }
  if (options.variants.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", options.model, ": no variants to route between"));
  }
  for (const RoutedVariant& v : options.variants) {
    if (!v.scheduler_model.valid()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", options.model, ": variant '", v.name, "' has no scheduler model"));
    }
    if (!(v.top1 > 0 && v.top1 <= 1) || !(v.images_per_second > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", options.model, ": variant '", v.name,
                       "' needs a measured top-1 in (0, 1] and a positive capacity"));
    }
  }
  if (options.demand_horizon < absl::ZeroDuration() || options.shrink_hold < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "variant router: demand_horizon and shrink_hold must not be negative");
  }
  if (!(options.shrink_utilization > 0 && options.shrink_utilization <= options.grow_utilization)) {
    return absl::InvalidArgumentError(
        "variant router: need 0 < shrink_utilization <= grow_utilization");
  }
  return std::unique_ptr<VariantRouter>(new VariantRouter(std::move(options)));
}

VariantRouter::VariantRouter(Options options) : options_(std::move(options)) {
  ranked_.resize(options_.variants.size());
  std::iota(ranked_.begin(), ranked_.end(), 0);
  std::stable_sort(ranked_.begin(), ranked_.end(), [this](int a, int b) {
    return options_.variants[a].top1 > options_.variants[b].top1;
  });
  window_start_ = options_.clock->Now();
  leaving_.assign(options_.variants.size(), false);
}

uint64_t VariantRouter::moves() const {
  hgpipe::MutexLock l(&mu_);
  return moves_;
}

absl::StatusOr<int> VariantRouter::Enqueue(std::unique_ptr<InferRequest> request,
                                           std::optional<double> min_top1) {
  if (request == nullptr) return absl::InvalidArgumentError("variant router: no request");
  absl::StatusOr<int> chosen =
      Choose(request->n_images, request->priority, request->deadline, min_top1);
  if (!chosen.ok()) return chosen.status();
  absl::Status s =
      options_.scheduler->Enqueue(options_.variants[*chosen].scheduler_model, std::move(request));
  if (!s.ok()) return s;
  return *chosen;
}

absl::StatusOr<int> VariantRouter::Choose(uint32_t images, uint32_t priority, absl::Time deadline,
                                          std::optional<double> min_top1) {
  const RoutedVariant& best = options_.variants[ranked_.front()];
  const double floor = min_top1.has_value() ? *min_top1 : best.top1;
  if (absl::Status s = CheckAccuracyFloor(options_.model, floor, best.name, best.top1); !s.ok()) {
    return s;
  }
  NoteDemand(images, floor);
  std::vector<bool> leaving;
  {
    hgpipe::MutexLock l(&mu_);
    leaving = leaving_;
  }
  std::vector<RouteCandidate> candidates;
  for (int i : ranked_) {
    const RoutedVariant& v = options_.variants[i];
    if (v.top1 < floor) break;
    // A variant with no board is not a way to meet a deadline (it would
    // wait for a reprogramming first), nor is one whose last board the
    // router is taking away (its queue must empty first).
    bool has_board = false;
    for (const Scheduler::BoardStatus& b : options_.scheduler->Boards(v.scheduler_model)) {
      if (Counts(b.phase)) has_board = true;
    }
    if (!has_board || leaving[i]) continue;
    absl::StatusOr<absl::Time> t =
        options_.scheduler->PredictCompletion(v.scheduler_model, images, priority);
    candidates.push_back({i, v.top1, t.ok() ? *t : absl::InfiniteFuture()});
  }
  const int c = ChooseVariant(candidates, deadline);
  if (c >= 0) return candidates[c].variant;
  // Nothing above the floor has a board that stays: the most accurate
  // variant not losing its board (a board is on its way to it, or the
  // scheduler gives it one), which the scheduler serves or refuses.
  for (int i : ranked_) {
    if (options_.variants[i].top1 < floor) break;
    if (!leaving[i]) return i;
  }
  return ranked_.front();
}

void VariantRouter::NoteDemand(uint32_t images, double floor) {
  double rate = 0;
  double window_floor = 1;
  {
    hgpipe::MutexLock l(&mu_);
    const absl::Time now = options_.clock->Now();
    window_images_ += images;
    window_floor_ = std::min(window_floor_, floor);
    const absl::Duration elapsed = now - window_start_;
    if (elapsed < options_.demand_window) return;
    const double sample = static_cast<double>(window_images_) / absl::ToDoubleSeconds(elapsed);
    const double weight = options_.demand_horizon > absl::ZeroDuration()
                              ? 1 - std::exp(-absl::FDivDuration(elapsed, options_.demand_horizon))
                              : 1;
    demand_ = demand_ < 0 ? sample : demand_ + weight * (sample - demand_);
    rate = demand_;
    window_floor = window_floor_;
    window_start_ = now;
    window_images_ = 0;
    window_floor_ = 1;
    if (!options_.move_boards || moving_ || now - last_move_ < options_.min_move_interval) {
      return;
    }
    moving_ = true;
  }
  MaybeMoveBoard(rate, window_floor);
}

void VariantRouter::MaybeMoveBoard(double rate, double floor) {
  const std::vector<RoutedVariant>& vs = options_.variants;
  std::vector<int> current(vs.size(), 0);
  std::vector<std::vector<Scheduler::BoardStatus>> boards(vs.size());
  int total = 0;
  for (size_t i = 0; i < vs.size(); ++i) {
    boards[i] = options_.scheduler->Boards(vs[i].scheduler_model);
    for (const Scheduler::BoardStatus& b : boards[i]) {
      if (Counts(b.phase)) ++current[i];
    }
    total += current[i];
  }
  const std::vector<int> grow = SplitBoards(vs, total, floor, rate / options_.grow_utilization);
  const std::vector<int> shrink = SplitBoards(vs, total, floor, rate / options_.shrink_utilization);
  const double cap = Capacity(vs, current);
  const std::vector<int>* target = nullptr;
  // Short of capacity (or on a variant below every floor): towards the
  // split the grow threshold asks for; with capacity to spare even at the
  // shrink threshold: back towards accuracy.
  bool below_floor = false;
  for (size_t i = 0; i < vs.size(); ++i) below_floor |= current[i] > 0 && vs[i].top1 < floor;
  if (cap < Capacity(vs, grow) || below_floor) {
    target = &grow;
  } else if (cap > Capacity(vs, shrink) * (1 + 1e-9)) {
    target = &shrink;
  }
  if (target == &shrink) {
    bool settled = true;
    for (const std::vector<Scheduler::BoardStatus>& of : boards) {
      for (const Scheduler::BoardStatus& b : of) {
        // A board recovering from a failure is not a move under way: it
        // may back off for seconds and fail again until it is retired.
        settled &= b.phase == BoardPhase::kServing || !Counts(b.phase) || b.recovering;
      }
    }
    const absl::Time now = options_.clock->Now();
    hgpipe::MutexLock l(&mu_);
    if (!settled) {
      shrink_since_ = absl::InfiniteFuture();
      target = nullptr;
    } else if (shrink_since_ == absl::InfiniteFuture()) {
      shrink_since_ = now;
    }
    if (now - shrink_since_ < options_.shrink_hold) target = nullptr;
  } else {
    hgpipe::MutexLock l(&mu_);
    shrink_since_ = absl::InfiniteFuture();
  }
  bool moved = false;
  if (target != nullptr && *target != current) {
    // From the variant with the most boards beyond its target to the one
    // furthest short of it.
    int from = -1, to = -1;
    for (size_t i = 0; i < vs.size(); ++i) {
      const int d = current[i] - (*target)[i];
      if (d > 0 && (from < 0 || d > current[from] - (*target)[from])) from = static_cast<int>(i);
      if (d < 0 && (to < 0 || d < current[to] - (*target)[to])) to = static_cast<int>(i);
    }
    if (from >= 0 && to >= 0) {
      // The serving board with the least in flight drains soonest.
      const Scheduler::BoardStatus* pick = nullptr;
      for (const Scheduler::BoardStatus& b : boards[from]) {
        if (b.phase != BoardPhase::kServing) continue;
        if (pick == nullptr || b.images_in_flight < pick->images_in_flight) pick = &b;
      }
      int serving = 0;
      for (const Scheduler::BoardStatus& b : boards[from]) {
        serving += b.phase == BoardPhase::kServing;
      }
      if (pick != nullptr) {
        moved = options_.scheduler->MoveBoard(pick->board_id, vs[to].scheduler_model).ok();
      }
      hgpipe::MutexLock l(&mu_);
      leaving_[to] = false;
      // The scheduler keeps a variant's last board while it has a queue:
      // stop routing to it so the queue empties and a later try moves it.
      if (!moved && serving == 1) leaving_[from] = true;
      if (moved) leaving_[from] = false;
    }
  }
  hgpipe::MutexLock l(&mu_);
  moving_ = false;
  if (moved) {
    ++moves_;
    last_move_ = options_.clock->Now();
  }
}

}  // namespace hgpipe::scheduler
