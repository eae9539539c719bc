#include "scheduler/rebalance.h"

namespace hgpipe::scheduler {

bool NeedsBoard(const ModelState& m, const std::vector<std::unique_ptr<BoardState>>& boards) {
  if (m.removed || m.queue.size() == 0 || !m.serving.empty() ||
      m.options.bitstream == nullptr) {
    return false;
  }
  for (const auto& b : boards) {
    if (b->model == &m && (b->life.phase == BoardPhase::kProgramming ||
                           b->life.phase == BoardPhase::kProbing ||
                           b->life.phase == BoardPhase::kDraining)) {
      return false;  // coming
    }
  }
  return true;
}

BoardState* ChooseDonor(const ModelState& m,
                        const std::vector<std::unique_ptr<ModelState>>& models,
                        const std::vector<std::unique_ptr<BoardState>>& boards) {
  BoardState* donor = nullptr;
  for (const auto& b : boards) {
    if (b->life.phase != BoardPhase::kIdle) continue;
    if (donor == nullptr || b->loaded == m.options.bitstream) donor = b.get();
  }
  if (donor != nullptr) return donor;
  for (const auto& b : boards) {
    if (b->life.phase != BoardPhase::kServing || !b->runs.empty() ||
        b->model->queue.size() > 0) {
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

}  // namespace hgpipe::scheduler
