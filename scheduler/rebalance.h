// Rebalancing: giving a board to a model that has queued images and none
// serving it (docs/scheduling.md, "Bitstreams at run time"). Which board is
// a choice without side effects (ChooseDonor); giving it is the life
// cycle's (BoardLifecycle::Give: drain, probe or program). The scheduler's
// tests cover both (tests/scheduler/scheduler_test.cc, "Reprogrammed",
// "GivesUpABoard").
//
// Thread safety: runs under the owning Scheduler's lock (scheduler/lock.h).
#ifndef HGPIPE_SCHEDULER_REBALANCE_H_
#define HGPIPE_SCHEDULER_REBALANCE_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"

#include "scheduler/board_lifecycle.h"
#include "scheduler/lock.h"
#include "scheduler/state.h"

namespace hgpipe::scheduler {

// Whether `m` needs a board: images queued, none serving it, a bitstream to
// program one with, and none already on the way (programming, probing, or
// draining for it). A model being removed still gets one for what it
// accepted.
bool NeedsBoard(const ModelState& m, const std::vector<std::unique_ptr<BoardState>>& boards)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

// The board to give `m`, or null:
//  1. an idle board, preferably one that still holds m's bitstream (then
//     only the probe runs);
//  2. else the least recently used serving board with nothing in flight
//     whose model has nothing queued;
//  3. else a board of the model with the most serving boards, if it has two
//     or more: the one with the fewest images in flight (it drains first).
BoardState* ChooseDonor(const ModelState& m, const std::vector<std::unique_ptr<ModelState>>& models,
                        const std::vector<std::unique_ptr<BoardState>>& boards)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

// Gives every model that needs a board the one ChooseDonor picks, in model
// order. A model left without one is looked at again on the next call
// (every completion and phase change makes one).
void Rebalance(const std::vector<std::unique_ptr<ModelState>>& models, BoardLifecycle& boards,
               Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

// Gives `b` to `m` on request (the variant router's moves,
// scheduler/variant_router.h) as Rebalance would: a board serving another
// model stops taking runs, drains, and is reprogrammed and probed (an idle
// one at once). OK if it already serves or is on its way to `m`.
// FailedPrecondition (boards may not be reprogrammed, `m` has no bitstream
// or is being removed, the board is not serving or idle, or it is the last
// of a model with queued images: that model would only take it back).
absl::Status MoveBoard(BoardState& b, ModelState& m, bool reprogram, BoardLifecycle& boards,
                       Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_REBALANCE_H_
