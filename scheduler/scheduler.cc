#include "base/mutex.h"
#include "scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"

namespace hgpipe::scheduler {

struct Scheduler::Request {
  std::unique_ptr<InferRequest> request;
  absl::Time arrival;
  uint32_t unanswered;  // images neither computed nor failed yet
  absl::Status status;  // the first error, if any
};

struct Scheduler::BoardState {
  BoardState(std::unique_ptr<accel::Board> b, int id)
      : board(std::move(b)),
        board_id(id),
        prediction(board->manifest().timing,
                   board->manifest().geometry.input_bytes()) {
    for (int s = board->num_slots() - 1; s >= 0; --s) free_slots.push_back(s);
  }
  const std::unique_ptr<accel::Board> board;
  const int board_id;
  // The scheduler's own copy of the board's timing model, fed with what it
  // submitted: predicts when the board's input stream goes idle.
  accel::PipelineModel prediction;
  std::vector<int> free_slots;
  bool healthy = true;
  uint32_t in_flight = 0;
};

struct Scheduler::Model {
  int id;
  ModelOptions options;
  accel::DeviceGeometry geometry;
  std::vector<std::unique_ptr<BoardState>> boards;
  std::deque<ImageRef> queue;
  // Accepted requests, owned here until answered.
  absl::flat_hash_map<Request*, std::unique_ptr<Request>> requests;
  // The earliest pending dispatch timer; later ones fire harmlessly.
  absl::Time next_timer = absl::InfiniteFuture();
  // Pending timers by our own sequence number (a callback cannot know the
  // id RunAt returns), so the destructor can cancel exactly those.
  absl::flat_hash_map<uint64_t, Clock::TimerId> timers;
  uint64_t timer_seq = 0;

  bool AnyHealthyBoard() const {
    return std::any_of(boards.begin(), boards.end(),
                       [](const auto& b) { return b->healthy; });
  }
};

struct Scheduler::Run {
  Model* model;
  BoardState* board;
  int slot;
  std::vector<ImageRef> images;
  absl::Time submitted;
};

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(Options options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("scheduler: no clock");
  }
  if (options.dispatch_lead < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("scheduler: dispatch_lead must be >= 0");
  }
  return std::unique_ptr<Scheduler>(new Scheduler(options));
}

Scheduler::Scheduler(Options options)
    : clock_(options.clock),
      observer_(options.observer),
      dispatch_lead_(options.dispatch_lead) {}

Scheduler::~Scheduler() {
  Shutdown();
  std::vector<Clock::TimerId> timers;
  {
    hgpipe::MutexLock l(&mu_);
    for (auto& m : models_) {
      for (const auto& [seq, id] : m->timers) timers.push_back(id);
    }
  }
  // Without mu_: Cancel waits for a running callback, which takes mu_.
  for (Clock::TimerId id : timers) clock_->Cancel(id);
  hgpipe::MutexLock l(&mu_);
  models_.clear();  // boards are idle: every run has been answered
}

absl::StatusOr<int> Scheduler::AddModel(
    const ModelOptions& options,
    std::vector<std::unique_ptr<accel::Board>> boards) {
  if (options.name.empty()) {
    return absl::InvalidArgumentError("scheduler: model name is empty");
  }
  if (boards.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", options.name, ": no boards"));
  }
  if (options.max_images_per_run == 0 || options.max_queue_images == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", options.name,
        ": max_images_per_run and max_queue_images must be > 0"));
  }
  const accel::DeviceGeometry g = boards[0]->manifest().geometry;
  for (const auto& b : boards) {
    const accel::DeviceGeometry& bg = b->manifest().geometry;
    if (bg.tokens != g.tokens || bg.token_values != g.token_values ||
        bg.classes != g.classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", options.name, ": board ", b->info().name,
                       " has a different device geometry"));
    }
  }
  hgpipe::MutexLock l(&mu_);
  if (model_ids_.contains(options.name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("model ", options.name, " is already loaded"));
  }
  auto m = std::make_unique<Model>();
  m->id = static_cast<int>(models_.size());
  m->options = options;
  m->geometry = g;
  for (auto& b : boards) {
    m->boards.push_back(std::make_unique<BoardState>(std::move(b), next_board_id_++));
  }
  model_ids_[options.name] = m->id;
  models_.push_back(std::move(m));
  return models_.back()->id;
}

absl::Status Scheduler::Enqueue(absl::string_view model,
                                std::unique_ptr<InferRequest> request) {
  if (request == nullptr || request->n_images == 0 ||
      request->images == nullptr || request->logits == nullptr) {
    return absl::InvalidArgumentError(
        "scheduler: a request needs at least one image and its buffers");
  }
  std::vector<std::unique_ptr<Run>> runs;
  {
    hgpipe::MutexLock l(&mu_);
    if (!accepting_) {
      return absl::UnavailableError("the server is shutting down");
    }
    auto it = model_ids_.find(model);
    if (it == model_ids_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
    }
    Model& m = *models_[it->second];
    if (!m.AnyHealthyBoard()) {
      return absl::UnavailableError(
          absl::StrCat("model ", m.options.name, " has no healthy board"));
    }
    const uint64_t queued = m.queue.size();
    if (queued + request->n_images > m.options.max_queue_images) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "model ", m.options.name, ": queue full (", queued, " images queued, ",
          request->n_images, " more would pass the limit of ",
          m.options.max_queue_images, ")"));
    }
    auto r = std::make_unique<Request>();
    r->arrival = clock_->Now();
    r->unanswered = request->n_images;
    r->request = std::move(request);
    for (uint32_t i = 0; i < r->unanswered; ++i) m.queue.push_back({r.get(), i});
    Request* raw = r.get();
    m.requests.emplace(raw, std::move(r));
    ++open_requests_;
    DispatchLocked(m, &runs);
    if (observer_) observer_->QueueDepth(m.id, m.queue.size());
  }
  for (auto& run : runs) Launch(std::move(run));
  return absl::OkStatus();
}

void Scheduler::DispatchLocked(Model& m,
                               std::vector<std::unique_ptr<Run>>* runs) {
  const absl::Time now = clock_->Now();
  while (!m.queue.empty()) {
    BoardState* best = nullptr;
    for (auto& b : m.boards) {
      if (!b->healthy || b->free_slots.empty()) continue;
      if (best == nullptr ||
          b->prediction.input_free_at() < best->prediction.input_free_at()) {
        best = b.get();
      }
    }
    if (best == nullptr) return;  // a completion dispatches again
    const absl::Time free_at = best->prediction.input_free_at();
    const uint32_t max_run =
        std::min(m.options.max_images_per_run, best->board->max_images_per_run());
    if (free_at > now) {
      // Busy: hold images back until the board is about to need them, so
      // that the next run carries everything that queued meanwhile.
      if (free_at - dispatch_lead_ > now) {
        ArmTimerLocked(m, free_at - dispatch_lead_);
        return;
      }
    } else if (m.queue.size() < max_run &&
               m.options.max_queue_delay > absl::ZeroDuration()) {
      const absl::Time fill_by =
          m.queue.front().request->arrival + m.options.max_queue_delay;
      if (fill_by > now) {
        ArmTimerLocked(m, fill_by);
        return;
      }
    }
    const uint32_t n = static_cast<uint32_t>(
        std::min<size_t>(m.queue.size(), max_run));
    auto run = std::make_unique<Run>();
    run->model = &m;
    run->board = best;
    run->slot = best->free_slots.back();
    best->free_slots.pop_back();
    run->images.assign(m.queue.begin(), m.queue.begin() + n);
    m.queue.erase(m.queue.begin(), m.queue.begin() + n);
    run->submitted = now;
    best->prediction.Submit(now, n);
    best->in_flight += n;
    runs->push_back(std::move(run));
  }
}

void Scheduler::ArmTimerLocked(Model& m, absl::Time due) {
  if (due >= m.next_timer) return;  // an earlier timer will re-evaluate
  m.next_timer = due;
  const int model_id = m.id;
  const uint64_t seq = ++m.timer_seq;
  m.timers[seq] = clock_->RunAt(
      due, [this, model_id, seq, due] { OnTimer(model_id, seq, due); });
}

void Scheduler::OnTimer(int model_id, uint64_t seq, absl::Time due) {
  std::vector<std::unique_ptr<Run>> runs;
  {
    hgpipe::MutexLock l(&mu_);
    Model& m = *models_[model_id];
    m.timers.erase(seq);
    if (m.next_timer == due) m.next_timer = absl::InfiniteFuture();
    DispatchLocked(m, &runs);
    if (observer_) observer_->QueueDepth(m.id, m.queue.size());
  }
  for (auto& run : runs) Launch(std::move(run));
}

void Scheduler::Launch(std::unique_ptr<Run> run) {
  const accel::DeviceGeometry& g = run->model->geometry;
  accel::Board* board = run->board->board.get();
  int8_t* dst = board->slot(run->slot).input.data();
  std::vector<absl::Duration> waits;
  waits.reserve(run->images.size());
  for (const ImageRef& img : run->images) {
    accel::PackImage(g, img.request->request->images + img.index * g.input_bytes(),
                     dst);
    dst += g.input_bytes();
    waits.push_back(run->submitted - img.request->arrival);
  }
  const int slot = run->slot;
  const uint32_t n = static_cast<uint32_t>(run->images.size());
  if (observer_) {
    observer_->RunStarted(run->model->id, run->board->board_id, n, waits,
                          run->board->prediction.InputTime(n));
  }
  board->Submit(slot, n, [this, r = std::move(run)](absl::Status s) mutable {
    OnRunDone(std::move(r), std::move(s));
  });
}

void Scheduler::OnRunDone(std::unique_ptr<Run> run, absl::Status status) {
  Model& m = *run->model;
  BoardState& b = *run->board;
  const accel::DeviceGeometry& g = m.geometry;
  const uint32_t n = static_cast<uint32_t>(run->images.size());
  if (status.ok()) {
    // The slot is still ours: decode straight into each request's buffer.
    const uint32_t* words = b.board->slot(run->slot).output.data();
    for (const ImageRef& img : run->images) {
      int32_t* out = img.request->request->logits + size_t{img.index} * g.classes;
      for (uint32_t j = 0; j < g.classes; ++j) {
        out[j] = accel::DecodeLogitWord(words[j]);
      }
      words += g.output_words();
    }
  }
  const absl::Duration device_time = clock_->Now() - run->submitted;
  std::vector<std::unique_ptr<Request>> done;
  std::vector<std::unique_ptr<Run>> runs;
  bool health_changed = false;
  {
    hgpipe::MutexLock l(&mu_);
    b.free_slots.push_back(run->slot);
    b.in_flight -= n;
    if (status.ok()) {
      for (const ImageRef& img : run->images) {
        Request* r = img.request;
        if (--r->unanswered == 0) {
          auto it = m.requests.find(r);
          done.push_back(std::move(it->second));
          m.requests.erase(it);
        }
      }
    } else {
      health_changed = b.healthy;
      b.healthy = false;
      // Retry on the model's other boards, ahead of newer work.
      for (auto it = run->images.rbegin(); it != run->images.rend(); ++it) {
        m.queue.push_front(*it);
      }
      if (!m.AnyHealthyBoard()) {
        FailQueuedLocked(
            m,
            absl::UnavailableError(absl::StrCat(
                "model ", m.options.name,
                ": no healthy board left; last failure on board ",
                b.board->info().name, ": ", status.message())),
            &done);
      }
    }
    open_requests_ -= done.size();
    DispatchLocked(m, &runs);
    if (observer_) observer_->QueueDepth(m.id, m.queue.size());
    ++delivering_;
  }
  if (observer_) {
    observer_->RunFinished(m.id, b.board_id, n, device_time, status);
    if (health_changed) observer_->BoardHealth(m.id, b.board_id, false);
  }
  Deliver(std::move(done), std::move(runs));
}

void Scheduler::FailQueuedLocked(Model& m, const absl::Status& status,
                                 std::vector<std::unique_ptr<Request>>* done) {
  for (const ImageRef& img : m.queue) {
    Request* r = img.request;
    if (r->status.ok()) r->status = status;
    if (--r->unanswered == 0) {
      auto it = m.requests.find(r);
      done->push_back(std::move(it->second));
      m.requests.erase(it);
    }
  }
  m.queue.clear();
}

void Scheduler::Deliver(std::vector<std::unique_ptr<Request>> done,
                        std::vector<std::unique_ptr<Run>> runs) {
  for (auto& run : runs) Launch(std::move(run));
  for (auto& r : done) {
    auto cb = std::move(r->request->done);
    cb(r->status);
  }
  done.clear();
  hgpipe::MutexLock l(&mu_);
  --delivering_;
}

bool Scheduler::ModelReady(absl::string_view model) const {
  hgpipe::MutexLock l(&mu_);
  auto it = model_ids_.find(model);
  return it != model_ids_.end() && models_[it->second]->AnyHealthyBoard();
}

std::vector<Scheduler::BoardStatus> Scheduler::Boards(
    absl::string_view model) const {
  hgpipe::MutexLock l(&mu_);
  std::vector<BoardStatus> out;
  auto it = model_ids_.find(model);
  if (it == model_ids_.end()) return out;
  for (const auto& b : models_[it->second]->boards) {
    out.push_back({b->board_id, b->board->info().name, b->healthy, b->in_flight});
  }
  return out;
}

bool Scheduler::Idle() const { return open_requests_ == 0 && delivering_ == 0; }

void Scheduler::Shutdown() {
  hgpipe::MutexLock l(&mu_);
  accepting_ = false;
  mu_.Await(absl::Condition(this, &Scheduler::Idle));
}

}  // namespace hgpipe::scheduler
