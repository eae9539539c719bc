#include "plan/simulation.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "accel/emulated_board.h"
#include "accel/kernel.h"
#include "accel/pipeline_model.h"
#include "base/clock.h"
#include "base/status_macros.h"
#include "scheduler/variant_router.h"

namespace hgpipe::plan {
namespace {

// The smallest geometry a device stream allows (2 tokens x 2 values per
// beat): packing and decoding cost next to nothing, and timing does not
// depend on it (the link is modelled by PipelineTiming, not by bytes here,
// unless link_bytes_per_second is set - see SimulationTiming).
constexpr accel::DeviceGeometry kSimGeometry{2, 2, 2};

// A bitstream's timing without its function: the boards never call Compute
// (compute = false), and it writes nothing if they do.
class TimingKernel final : public accel::Kernel {
 public:
  explicit TimingKernel(accel::BitstreamManifest manifest) : manifest_(std::move(manifest)) {}
  const accel::BitstreamManifest& manifest() const override { return manifest_; }
  void Compute(const int8_t*, uint32_t, uint32_t*) const override {}

 private:
  accel::BitstreamManifest manifest_;
};

// The device geometry is tiny, so a host link limit given in bytes/s would
// never bind; scale it so that one simulated image takes as long on the link
// as one real (DeiT-tiny) image would.
accel::PipelineTiming SimulationTiming(accel::PipelineTiming timing) {
  if (timing.link_bytes_per_second > 0) {
    const double scale = static_cast<double>(kSimGeometry.input_bytes()) /
                         static_cast<double>(accel::DeviceGeometry{}.input_bytes());
    timing.link_bytes_per_second *= scale;
  }
  return timing;
}

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("simulation: ", where, ": ", what));
}

absl::Status ValidateSpec(const SimulationSpec& spec) {
  if (spec.models.empty()) return Invalid("models", "at least one is needed");
  if (!(spec.duration > absl::ZeroDuration()) || spec.duration == absl::InfiniteDuration()) {
    return Invalid("duration", "must be > 0 and finite");
  }
  if (spec.warmup < absl::ZeroDuration() || spec.warmup >= spec.duration) {
    return Invalid("warmup", "must be in [0, duration)");
  }
  for (const ModelSpec& m : spec.models) {
    const std::string where = absl::StrCat("model '", m.name, "'");
    if (m.name.empty()) return Invalid("model", "name is empty");
    if (m.boards < 1) return Invalid(where, "boards must be >= 1");
    if (m.streams.empty()) return Invalid(where, "no request stream");
    if (m.host_overhead < absl::ZeroDuration() || m.host_overhead == absl::InfiniteDuration()) {
      return Invalid(where, "host_overhead must be >= 0 and finite");
    }
    if (m.host_cpu < absl::ZeroDuration() || m.host_cpu == absl::InfiniteDuration() ||
        m.host_cores < 1) {
      return Invalid(where, "host_cpu must be >= 0 and finite, host_cores >= 1");
    }
    if (const auto& q = m.host_overhead_quantiles; !q.empty()) {
      if (q.size() < 2 || q.front().first != 0 || q.back().first != 1) {
        return Invalid(where, "host_overhead_quantiles must run from q = 0 to q = 1");
      }
      for (size_t i = 0; i < q.size(); ++i) {
        if (q[i].second < absl::ZeroDuration() || q[i].second == absl::InfiniteDuration() ||
            (i > 0 && (q[i].first <= q[i - 1].first || q[i].second < q[i - 1].second))) {
          return Invalid(where,
                         "host_overhead_quantiles must increase in q, with "
                         "finite values >= 0 that do not decrease");
        }
      }
    }
    if (m.board_max_images_per_run < 1) {
      return Invalid(where, "board_max_images_per_run must be >= 1");
    }
    if (m.board_slots < 0) return Invalid(where, "board_slots must be >= 0");
    if (absl::Status s = m.timing.Validate(); !s.ok()) {
      return Invalid(where, s.message());
    }
    if (!m.variants.empty() && !spec.scheduler.reprogram) {
      return Invalid(where, "variants need the scheduler's reprogram option");
    }
    for (size_t i = 0; i < m.variants.size(); ++i) {
      const VariantSpec& v = m.variants[i];
      const std::string vw = absl::StrCat(where, " variant '", v.name, "'");
      if (v.name.empty()) return Invalid(where, "a variant has no name");
      for (size_t j = 0; j < i; ++j) {
        if (m.variants[j].name == v.name) return Invalid(vw, "appears twice");
      }
      if (!(v.top1 > 0 && v.top1 <= 1)) return Invalid(vw, "top1 must be in (0, 1]");
      if (absl::Status s = v.timing.Validate(); !s.ok()) return Invalid(vw, s.message());
    }
    for (const StreamSpec& s : m.streams) {
      if (!(s.rate > 0) || !std::isfinite(s.rate)) {
        return Invalid(where, absl::StrCat("stream rate must be > 0, got ", s.rate));
      }
      if (s.images_per_request < 1) {
        return Invalid(where, "images_per_request must be >= 1");
      }
      if (s.priority > m.options.priority_levels) {
        return Invalid(where, absl::StrCat("stream priority ", s.priority, " is outside 0..",
                                           m.options.priority_levels));
      }
      if (s.timeout <= absl::ZeroDuration()) {
        return Invalid(where, "stream timeout must be > 0 (infinite: none)");
      }
    }
  }
  return absl::OkStatus();
}

// Uniform in [0, 1) from 53 random bits: the same numbers on every platform
// (std::exponential_distribution's are the library's choice).
double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

absl::Duration HostOverhead(const ModelSpec& m, std::mt19937_64& rng) {
  const auto& q = m.host_overhead_quantiles;
  if (q.empty()) return m.host_overhead;
  const double u = Uniform(rng);
  size_t i = 1;
  while (i + 1 < q.size() && q[i].first <= u) ++i;
  const double f = (u - q[i - 1].first) / (q[i].first - q[i - 1].first);
  return q[i - 1].second + (q[i].second - q[i - 1].second) * f;
}

class Simulation final : public scheduler::Observer {
 public:
  explicit Simulation(const SimulationSpec& spec) : spec_(spec) {}

  absl::StatusOr<SimulationResult> Run();

  // scheduler::Observer
  void RunStarted(int model_id, int board_id, uint32_t images,
                  absl::Span<const absl::Duration> queue_waits, absl::Duration input_time) override;

 private:
  struct Stream {
    const StreamSpec* spec;
    int model;
    std::string name;
    std::mt19937_64 rng;
    std::mt19937_64 host_rng;  // apart, so arrivals do not depend on it
    absl::Duration gap;        // constant arrivals
    // Measured requests (arrived in the window).
    uint64_t requests = 0;
    uint64_t requests_ok = 0;
    uint64_t images_ok = 0;
    std::map<std::string, uint64_t> failed;
    std::vector<double> latencies;  // seconds
    uint64_t requests_in_deadline = 0;
  };
  struct Board {
    int model;
    int scheduler_model;          // the variant its mirror models
    accel::PipelineModel mirror;  // the board's own timing model, replayed
    // Input intervals of runs that may still reach past the window's end.
    std::deque<std::pair<absl::Time, absl::Time>> recent;
    absl::Duration busy;  // inside the window
  };
  struct Model {
    const ModelSpec* spec;
    scheduler::ModelHandle handle;  // the scheduler's
    std::vector<int> boards;
    std::vector<double> queue_waits;  // seconds
    uint64_t runs = 0;
    uint64_t run_images = 0;
    uint64_t images_ok_in_window = 0;
    // When each host core frees (ModelSpec::host_cpu).
    std::vector<absl::Time> host_cores_free;
    // With variants: the router, and per variant its timing; measured
    // requests answered by each.
    std::unique_ptr<scheduler::VariantRouter> router;
    std::vector<accel::PipelineTiming> variant_timing;
    std::vector<uint64_t> answered_by_variant;
  };

  void ScheduleArrival(int stream, absl::Time when);
  void OnArrival(int stream);
  void EnqueueRequest(int stream, absl::Time arrival, bool measured);
  void OnDone(int stream, absl::Time arrival, bool measured, uint32_t n, int variant,
              const absl::Status& status);
  // Arrivals stop now (max_images reached): the window ends here.
  void CloseWindow(absl::Time now);
  bool InWindow(absl::Time t) const { return t >= window_start_ && t < window_end_; }

  const SimulationSpec& spec_;
  SimClock clock_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::vector<Model> models_;
  std::vector<Stream> streams_;
  std::vector<Board> boards_;  // by scheduler board id
  // Scheduler model id -> (our model, its variant or 0).
  std::map<int, std::pair<int, int>> of_scheduler_id_;
  absl::Time start_;
  absl::Time window_start_;
  absl::Time window_end_;
  uint64_t images_arrived_ = 0;
  uint64_t requests_arrived_ = 0;
  uint64_t images_answered_ = 0;
  absl::Time last_answer_;
  // Shared request buffers: nothing reads the images or the logits.
  std::vector<int8_t> images_;
  std::vector<int32_t> logits_;
};

absl::StatusOr<SimulationResult> Simulation::Run() {
  const absl::Time wall_start = absl::Now();
  start_ = clock_.Now();
  window_start_ = start_ + spec_.warmup;
  window_end_ = start_ + spec_.duration;
  last_answer_ = start_;

  scheduler::Scheduler::Options so = spec_.scheduler;
  so.clock = &clock_;
  so.observer = this;
  ASSIGN_OR_RETURN(scheduler_, scheduler::Scheduler::Create(so));

  uint32_t max_request_images = 1;
  for (const ModelSpec& ms : spec_.models) {
    // Without variants the model is its one bitstream.
    std::vector<VariantSpec> variants = ms.variants;
    if (variants.empty()) variants.push_back({"", ms.timing, 1});
    std::vector<std::shared_ptr<accel::Bitstream>> bitstreams;
    for (const VariantSpec& v : variants) {
      accel::BitstreamManifest vm;
      vm.name = v.name.empty() ? ms.name : absl::StrCat(ms.name, "@", v.name);
      vm.geometry = kSimGeometry;
      vm.timing = SimulationTiming(v.timing);
      auto b = std::make_shared<accel::Bitstream>();
      b->manifest = vm;
      b->kernel = std::make_shared<TimingKernel>(vm);
      bitstreams.push_back(std::move(b));
    }
    const accel::BitstreamManifest& manifest = bitstreams[0]->manifest;
    auto kernel = bitstreams[0]->kernel;
    auto bitstream = bitstreams[0];

    std::vector<std::unique_ptr<accel::Board>> boards;
    for (int i = 0; i < ms.boards; ++i) {
      accel::EmulatedBoard::Options bo;
      bo.name = absl::StrCat(ms.name, "/sim", i);
      bo.kernel = kernel;
      bo.max_images_per_run = ms.board_max_images_per_run;
      bo.num_slots = ms.board_slots;
      bo.clock = &clock_;
      bo.compute_inline = true;
      bo.compute = false;
      bo.program_time = ms.program_time;
      ASSIGN_OR_RETURN(std::unique_ptr<accel::EmulatedBoard> board,
                       accel::EmulatedBoard::Create(std::move(bo)));
      boards.push_back(std::move(board));
    }
    scheduler::ModelOptions mo = ms.options;
    mo.name = ms.name;
    mo.bitstream = bitstream;
    const int first_board = static_cast<int>(boards_.size());
    ASSIGN_OR_RETURN(const scheduler::ModelHandle handle,
                     scheduler_->AddModel(mo, std::move(boards)));
    Model m;
    m.spec = &ms;
    m.handle = handle;
    m.host_cores_free.assign(ms.host_cores, absl::InfinitePast());
    const int index = static_cast<int>(models_.size());
    of_scheduler_id_[handle.id()] = {index, 0};
    m.variant_timing.push_back(manifest.timing);
    if (!ms.variants.empty()) {
      scheduler::VariantRouter::Options ro;
      ro.model = ms.name;
      ro.scheduler = scheduler_.get();
      ro.clock = &clock_;
      ro.min_move_interval = ms.min_move_interval;
      ro.variants.push_back({variants[0].name, handle, variants[0].top1,
                             accel::PipelineTiming(manifest.timing).max_images_per_second()});
      for (size_t v = 1; v < variants.size(); ++v) {
        scheduler::ModelOptions vo = ms.options;
        vo.name = bitstreams[v]->manifest.name;
        vo.bitstream = bitstreams[v];
        ASSIGN_OR_RETURN(const scheduler::ModelHandle vh, scheduler_->AddModel(vo, {}));
        of_scheduler_id_[vh.id()] = {index, static_cast<int>(v)};
        m.variant_timing.push_back(bitstreams[v]->manifest.timing);
        ro.variants.push_back({variants[v].name, vh, variants[v].top1,
                               bitstreams[v]->manifest.timing.max_images_per_second()});
      }
      ASSIGN_OR_RETURN(m.router, scheduler::VariantRouter::Create(std::move(ro)));
    }
    m.answered_by_variant.assign(variants.size(), 0);
    for (int i = 0; i < ms.boards; ++i) {
      // Board ids are dense, in order of addition.
      m.boards.push_back(first_board + i);
      boards_.push_back(Board{static_cast<int>(models_.size()),
                              handle.id(),
                              accel::PipelineModel(manifest.timing, kSimGeometry.input_bytes()),
                              {},
                              absl::ZeroDuration()});
    }
    models_.push_back(std::move(m));
    for (const StreamSpec& ss : ms.streams) {
      Stream s;
      s.spec = &ss;
      s.model = static_cast<int>(models_.size()) - 1;
      s.name = !ss.name.empty()   ? ss.name
               : ss.priority == 0 ? std::string("default")
                                  : absl::StrCat("p", ss.priority);
      // Streams draw from independent generators, so adding a stream does
      // not change the others' arrivals.
      s.rng.seed(spec_.seed * 0x9E3779B97F4A7C15ull + streams_.size() + 1);
      s.host_rng.seed(spec_.seed * 0xC2B2AE3D27D4EB4Full + streams_.size() + 1);
      s.gap = absl::Seconds(1.0 / ss.rate);
      streams_.push_back(std::move(s));
      max_request_images = std::max(max_request_images, ss.images_per_request);
    }
  }
  images_.assign(size_t{max_request_images} * kSimGeometry.input_bytes(), 0);
  logits_.assign(size_t{max_request_images} * kSimGeometry.classes, 0);

  for (size_t i = 0; i < streams_.size(); ++i) {
    Stream& s = streams_[i];
    const absl::Duration first = s.spec->arrivals == Arrivals::kConstant
                                     ? s.gap
                                     : absl::Seconds(-std::log1p(-Uniform(s.rng)) / s.spec->rate);
    ScheduleArrival(static_cast<int>(i), start_ + first);
  }
  clock_.RunUntilIdle();
  scheduler_->Shutdown();

  SimulationResult result;
  result.window = window_end_ - window_start_;
  result.simulated = last_answer_ - start_;
  result.images = images_answered_;
  result.requests = requests_arrived_;
  const double window_s = absl::ToDoubleSeconds(result.window);
  for (Model& m : models_) {
    ModelResult mr;
    mr.name = m.spec->name;
    mr.boards = m.spec->boards;
    std::vector<double> all_latencies;
    for (Stream& s : streams_) {
      if (&models_[s.model] != &m) continue;
      StreamResult sr;
      sr.name = s.name;
      sr.priority = s.spec->priority;
      sr.rate = s.spec->rate;
      sr.requests = s.requests;
      sr.requests_ok = s.requests_ok;
      sr.images_ok = s.images_ok;
      sr.failed = s.failed;
      sr.requests_in_deadline = s.requests_in_deadline;
      mr.requests_in_deadline += s.requests_in_deadline;
      all_latencies.insert(all_latencies.end(), s.latencies.begin(), s.latencies.end());
      sr.latency = ComputePercentiles(s.latencies);
      mr.requests += sr.requests;
      mr.requests_ok += sr.requests_ok;
      for (const auto& [code, n] : sr.failed) mr.requests_failed += n;
      mr.offered_images_per_second += s.spec->rate * s.spec->images_per_request;
      mr.streams.push_back(std::move(sr));
    }
    mr.latency = ComputePercentiles(all_latencies);
    mr.queue_wait = ComputePercentiles(m.queue_waits);
    mr.images_per_second = window_s > 0 ? static_cast<double>(m.images_ok_in_window) / window_s : 0;
    const accel::PipelineModel timing(SimulationTiming(m.spec->timing), kSimGeometry.input_bytes());
    mr.capacity_images_per_second = m.spec->boards / absl::ToDoubleSeconds(timing.image_time());
    double sum = 0;
    for (int b : m.boards) {
      const double u = window_s > 0 ? absl::ToDoubleSeconds(boards_[b].busy) / window_s : 0;
      mr.board_utilization.push_back(u);
      sum += u;
    }
    mr.utilization = sum / m.spec->boards;
    mr.runs = m.runs;
    mr.mean_run_images = m.runs > 0 ? static_cast<double>(m.run_images) / m.runs : 0;
    mr.goodput = mr.requests > 0 ? static_cast<double>(mr.requests_in_deadline) / mr.requests : 0;
    if (m.router != nullptr) {
      uint64_t answered = 0;
      double sum = 0;
      for (size_t v = 0; v < m.answered_by_variant.size(); ++v) {
        const scheduler::RoutedVariant& rv = m.router->variants()[v];
        mr.requests_by_variant[rv.name] = m.answered_by_variant[v];
        answered += m.answered_by_variant[v];
        sum += rv.top1 * m.answered_by_variant[v];
      }
      mr.mean_accuracy = answered > 0 ? sum / answered : 0;
      mr.board_moves = m.router->moves();
    }
    result.models.push_back(std::move(mr));
  }
  scheduler_.reset();
  result.wall = absl::Now() - wall_start;
  return result;
}

void Simulation::ScheduleArrival(int stream, absl::Time when) {
  clock_.RunAt(when, [this, stream] { OnArrival(stream); });
}

void Simulation::OnArrival(int stream) {
  Stream& s = streams_[stream];
  const absl::Time now = clock_.Now();
  if (now >= start_ + spec_.duration ||
      (spec_.max_images > 0 && images_arrived_ >= spec_.max_images)) {
    return;  // the stream ends: no next arrival
  }
  images_arrived_ += s.spec->images_per_request;
  ++requests_arrived_;
  const bool measured = InWindow(now);
  if (measured) ++s.requests;
  const ModelSpec& ms = spec_.models[s.model];
  absl::Duration overhead = HostOverhead(ms, s.host_rng);
  if (ms.host_cpu > absl::ZeroDuration()) {
    // Wait for the host core that frees first, then hold it for host_cpu.
    std::vector<absl::Time>& cores = models_[s.model].host_cores_free;
    auto core = std::min_element(cores.begin(), cores.end());
    const absl::Time start = std::max(now, *core);
    *core = start + ms.host_cpu;
    overhead += start - now;
  }
  if (overhead > absl::ZeroDuration()) {
    clock_.RunAt(now + overhead,
                 [this, stream, now, measured] { EnqueueRequest(stream, now, measured); });
  } else {
    EnqueueRequest(stream, now, measured);
  }
  if (spec_.max_images > 0 && images_arrived_ >= spec_.max_images) {
    CloseWindow(now + absl::Nanoseconds(1));  // this arrival is inside
    return;
  }
  const absl::Duration gap = s.spec->arrivals == Arrivals::kConstant
                                 ? s.gap
                                 : absl::Seconds(-std::log1p(-Uniform(s.rng)) / s.spec->rate);
  ScheduleArrival(stream, now + gap);
}

void Simulation::EnqueueRequest(int stream, absl::Time arrival, bool measured) {
  Stream& s = streams_[stream];
  const uint32_t n = s.spec->images_per_request;
  auto r = std::make_unique<scheduler::BufferRequest>();
  r->images = images_.data();
  r->n_images = n;
  r->logits = logits_.data();
  r->priority = s.spec->priority;
  if (s.spec->timeout != absl::InfiniteDuration()) {
    r->deadline = arrival + s.spec->timeout;
  }
  Model& m = models_[s.model];
  if (m.router == nullptr) {
    r->done = [this, stream, arrival, measured, n](absl::Status status) {
      OnDone(stream, arrival, measured, n, 0, status);
    };
    absl::Status status = scheduler_->Enqueue(m.handle, std::move(r));
    if (!status.ok()) OnDone(stream, arrival, measured, n, 0, status);
    return;
  }
  // Which variant answers is known once the router returns; an answer that
  // comes inside Enqueue is a refusal, which has none.
  auto variant = std::make_shared<int>(-1);
  r->done = [this, stream, arrival, measured, n, variant](absl::Status status) {
    OnDone(stream, arrival, measured, n, *variant, status);
  };
  absl::StatusOr<int> v = m.router->Enqueue(std::move(r), s.spec->min_accuracy);
  if (v.ok()) {
    *variant = *v;
  } else {
    OnDone(stream, arrival, measured, n, -1, v.status());
  }
}

void Simulation::OnDone(int stream, absl::Time arrival, bool measured, uint32_t n, int variant,
                        const absl::Status& status) {
  Stream& s = streams_[stream];
  const absl::Time now = clock_.Now();
  last_answer_ = std::max(last_answer_, now);
  if (status.ok()) {
    images_answered_ += n;
    if (InWindow(now)) models_[s.model].images_ok_in_window += n;
  }
  if (!measured) return;
  if (status.ok()) {
    ++s.requests_ok;
    s.images_ok += n;
    s.latencies.push_back(absl::ToDoubleSeconds(now - arrival));
    if (s.spec->timeout == absl::InfiniteDuration() || now - arrival <= s.spec->timeout) {
      ++s.requests_in_deadline;
    }
    if (variant >= 0) ++models_[s.model].answered_by_variant[variant];
  } else {
    ++s.failed[absl::StatusCodeToString(status.code())];
  }
}

void Simulation::RunStarted(int model_id, int board_id, uint32_t images,
                            absl::Span<const absl::Duration> queue_waits,
                            absl::Duration input_time) {
  const absl::Time now = clock_.Now();
  Board& b = boards_[board_id];
  if (model_id != b.scheduler_model) {
    // Reprogrammed for another variant: its pipeline started empty.
    const auto [index, variant] = of_scheduler_id_.at(model_id);
    b.scheduler_model = model_id;
    b.mirror =
        accel::PipelineModel(models_[index].variant_timing[variant], kSimGeometry.input_bytes());
  }
  // The board will stream this run's input exactly when its own copy of the
  // pipeline model says (same timing, same submissions).
  const accel::RunTimes t = b.mirror.Submit(now, images);
  while (!b.recent.empty() && b.recent.front().second <= now) b.recent.pop_front();
  b.recent.emplace_back(t.input_start, t.input_end);
  const absl::Time from = std::max(t.input_start, window_start_);
  const absl::Time to = std::min(t.input_end, window_end_);
  if (to > from) b.busy += to - from;
  if (!InWindow(now)) return;
  Model& m = models_[b.model];
  ++m.runs;
  m.run_images += images;
  for (absl::Duration w : queue_waits) m.queue_waits.push_back(absl::ToDoubleSeconds(w));
}

void Simulation::CloseWindow(absl::Time now) {
  if (now >= window_end_) return;
  // Runs already on the boards were counted up to the old end.
  for (Board& b : boards_) {
    for (const auto& [start, end] : b.recent) {
      const absl::Time from = std::max({start, window_start_, now});
      const absl::Time to = std::min(end, window_end_);
      if (to > from) b.busy -= to - from;
    }
  }
  window_end_ = std::max(now, window_start_);
}

void AppendPercentiles(std::string* out, absl::string_view key, const Percentiles& p) {
  absl::StrAppendFormat(out,
                        "\"%s\":{\"count\":%d,\"p50\":%.6f,\"p90\":%.6f,"
                        "\"p99\":%.6f,\"max\":%.6f,\"mean\":%.6f}",
                        key, p.count, p.p50, p.p90, p.p99, p.max, p.mean);
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace

absl::StatusOr<SimulationResult> Simulate(const SimulationSpec& spec) {
  RETURN_IF_ERROR(ValidateSpec(spec));
  Simulation sim(spec);
  return sim.Run();
}

Percentiles ComputePercentiles(std::vector<double>& values) {
  Percentiles p;
  p.count = values.size();
  if (values.empty()) return p;
  // Selection in increasing rank order, each within the part above the
  // previous rank: linear time, where a sort of a million values is not.
  auto begin = values.begin();
  auto at = [&](double q) {
    size_t rank = static_cast<size_t>(std::ceil(q * values.size()));
    rank = std::clamp<size_t>(rank, 1, values.size());
    const auto nth = values.begin() + (rank - 1);
    std::nth_element(begin, nth, values.end());
    begin = nth;
    return *nth * 1e3;
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.max = *std::max_element(begin, values.end()) * 1e3;
  double sum = 0;
  for (double v : values) sum += v;
  p.mean = sum / values.size() * 1e3;
  return p;
}

std::string ModelResultToJson(const ModelResult& m) {
  std::string out = "{";
  absl::StrAppend(&out, "\"name\":", JsonString(m.name), ",\"boards\":", m.boards);
  absl::StrAppendFormat(&out,
                        ",\"requests\":%d,\"requests_ok\":%d,\"requests_failed\":%d,"
                        "\"offered_images_per_second\":%.3f,\"images_per_second\":%.3f,"
                        "\"capacity_images_per_second\":%.3f,\"utilization\":%.6f,"
                        "\"runs\":%d,\"mean_run_images\":%.3f,",
                        m.requests, m.requests_ok, m.requests_failed, m.offered_images_per_second,
                        m.images_per_second, m.capacity_images_per_second, m.utilization, m.runs,
                        m.mean_run_images);
  out += "\"board_utilization\":[";
  for (size_t i = 0; i < m.board_utilization.size(); ++i) {
    absl::StrAppendFormat(&out, "%s%.6f", i ? "," : "", m.board_utilization[i]);
  }
  out += "],";
  absl::StrAppendFormat(&out,
                        "\"requests_in_deadline\":%d,\"goodput\":%.6f,"
                        "\"mean_accuracy\":%.6f,\"board_moves\":%d,\"requests_by_variant\":{",
                        m.requests_in_deadline, m.goodput, m.mean_accuracy, m.board_moves);
  bool first_variant = true;
  for (const auto& [name, n] : m.requests_by_variant) {
    absl::StrAppend(&out, first_variant ? "" : ",", JsonString(name), ":", n);
    first_variant = false;
  }
  out += "},";
  AppendPercentiles(&out, "latency_ms", m.latency);
  out += ",";
  AppendPercentiles(&out, "queue_wait_ms", m.queue_wait);
  out += ",\"streams\":[";
  for (size_t i = 0; i < m.streams.size(); ++i) {
    const StreamResult& s = m.streams[i];
    if (i) out += ",";
    absl::StrAppend(&out, "{\"name\":", JsonString(s.name));
    absl::StrAppendFormat(&out,
                          ",\"priority\":%d,\"rate\":%.3f,\"requests\":%d,"
                          "\"requests_ok\":%d,\"images_ok\":%d,\"failed\":{",
                          s.priority, s.rate, s.requests, s.requests_ok, s.images_ok);
    bool first = true;
    for (const auto& [code, n] : s.failed) {
      absl::StrAppend(&out, first ? "" : ",", JsonString(code), ":", n);
      first = false;
    }
    out += "},";
    AppendPercentiles(&out, "latency_ms", s.latency);
    out += "}";
  }
  out += "]}";
  return out;
}

std::string SimulationResultToJson(const SimulationResult& r) {
  std::string out = "{";
  absl::StrAppendFormat(&out,
                        "\"window_seconds\":%.6f,\"simulated_seconds\":%.6f,"
                        "\"wall_seconds\":%.6f,\"images\":%d,\"requests\":%d,",
                        absl::ToDoubleSeconds(r.window), absl::ToDoubleSeconds(r.simulated),
                        absl::ToDoubleSeconds(r.wall), r.images, r.requests);
  out += "\"models\":[";
  for (size_t i = 0; i < r.models.size(); ++i) {
    if (i) out += ",";
    out += ModelResultToJson(r.models[i]);
  }
  out += "]}";
  return out;
}

}  // namespace hgpipe::plan
