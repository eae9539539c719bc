#include "scheduler/rebalance.h"

#include "absl/strings/str_cat.h"

namespace hgpipe::scheduler {

bool NeedsBoard(const ModelState& m, const std::vector<std::unique_ptr<BoardState>>& boards) {
  if (m.removed || m.queue.size() == 0 || !m.serving.empty() || m.bitstream == nullptr) {
    return false;
  }
  for (const auto& b : boards) {
    if (b->model == &m &&
        (b->life.phase == BoardPhase::kProgramming || b->life.phase == BoardPhase::kProbing ||
         b->life.phase == BoardPhase::kDraining)) {
      return false;  // coming
    }
  }
  return true;
}

BoardState* ChooseDonor(const ModelState& m, const std::vector<std::unique_ptr<ModelState>>& models,
                        const std::vector<std::unique_ptr<BoardState>>& boards) {
  BoardState* donor = nullptr;
  for (const auto& b : boards) {
    if (b->life.phase != BoardPhase::kIdle) continue;
    if (donor == nullptr || b->loaded == m.bitstream) donor = b.get();
  }
  if (donor != nullptr) return donor;
  for (const auto& b : boards) {
    if (b->life.phase != BoardPhase::kServing || !b->runs.empty() || b->model->queue.size() > 0) {
      continue;
    }
    if (donor == nullptr || b->last_used < donor->last_used) donor = b.get();
  }
  if (donor != nullptr) return donor;
  const ModelState* richest = nullptr;
  for (const auto& other : models) {
    if (other->serving.size() >= 2 &&
        (richest == nullptr || other->serving.size() > richest->serving.size())) {
      richest = other.get();
    }
  }
  if (richest == nullptr) return nullptr;
  for (BoardState* b : richest->serving) {
    if (donor == nullptr || b->in_flight_images < donor->in_flight_images) donor = b;
  }
  return donor;
}

void Rebalance(const std::vector<std::unique_ptr<ModelState>>& models, BoardLifecycle& boards,
               Pending* p) {
  for (const auto& m : models) {
    if (!NeedsBoard(*m, boards.boards())) continue;
    BoardState* donor = ChooseDonor(*m, models, boards.boards());
    if (donor == nullptr) continue;  // a later completion looks again
    boards.Give(*donor, *m, p);
  }
}

absl::Status MoveBoard(BoardState& b, ModelState& m, bool reprogram, BoardLifecycle& boards,
                       Pending* p) {
  if (b.model == &m) return absl::OkStatus();
  if (!reprogram || m.bitstream == nullptr || m.removing) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", m.options.name, ": boards cannot be reprogrammed for it"));
  }
  if (b.life.phase != BoardPhase::kServing && b.life.phase != BoardPhase::kIdle) {
    return absl::FailedPreconditionError(
        absl::StrCat("board ", b.name, " is ", BoardPhaseName(b.life.phase)));
  }
  if (b.life.phase == BoardPhase::kServing && b.model->serving.size() == 1 &&
      b.model->queue.size() > 0) {
    return absl::FailedPreconditionError(absl::StrCat("board ", b.name, " is the last of model ",
                                                      b.model->options.name,
                                                      ", which has images queued"));
  }
  boards.Give(b, m, p);
  return absl::OkStatus();
}

}  // namespace hgpipe::scheduler
