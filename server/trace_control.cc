#include "server/trace_control.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "server/client_text.h"

namespace hgpipe::server {
namespace {

// kReceived's names are the front end's, two of them.
constexpr const char* kStepNames[kTraceSteps] = {
    "",
    "REQUEST_START",
    "QUEUE_START",
    "COMPUTE_START",
    "COMPUTE_INPUT_END",
    "COMPUTE_OUTPUT_START",
    "COMPUTE_END",
    "REQUEST_END",
};
// A request id longer than this is cut in the trace: it is client text, and
// a trace file should not grow by megabytes per request.
constexpr size_t kMaxTracedRequestId = 1024;

bool IsStart(TraceStep s) {
  return s == TraceStep::kReceived || s == TraceStep::kRequestStart ||
         s == TraceStep::kQueueStart || s == TraceStep::kComputeStart ||
         s == TraceStep::kComputeOutputStart;
}

absl::Status Bad(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("trace setting ", name, ": ", why));
}

// The one value of a one-value setting.
absl::StatusOr<std::string> One(absl::string_view name, const std::vector<std::string>& values) {
  if (values.size() != 1) {
    return Bad(name, absl::StrCat("takes one value, not ", values.size()));
  }
  return values[0];
}

absl::StatusOr<bool> ParseLevel(const std::vector<std::string>& values) {
  bool timestamps = false;
  for (const std::string& v : values) {
    if (v == "TIMESTAMPS") {
      timestamps = true;
    } else if (v == "TENSORS") {
      return Bad("trace_level",
                 "TENSORS is not supported by hgpipe-server (an image is 150 KB of numbers "
                 "per trace); TIMESTAMPS is");
    } else if (v != "OFF") {
      return Bad("trace_level", absl::StrCat(Quote(v), " is not OFF or TIMESTAMPS"));
    }
  }
  return timestamps;
}

// A decimal integer in [lo, hi].
absl::StatusOr<int64_t> ParseInt(absl::string_view name, const std::vector<std::string>& values,
                                 int64_t lo, int64_t hi) {
  absl::StatusOr<std::string> v = One(name, values);
  if (!v.ok()) return v.status();
  int64_t n = 0;
  if (!absl::SimpleAtoi(*v, &n) || n < lo || n > hi) {
    return Bad(name, absl::StrCat(Quote(*v), " is not an integer in [", lo, ", ", hi, "]"));
  }
  return n;
}

constexpr int64_t kMaxU32 = 0xffffffff;

std::vector<std::string> Values(std::string v) { return {std::move(v)}; }

}  // namespace

absl::StatusOr<TraceSettings> TraceSettingsFromFlags(const std::string& file,
                                                     const std::string& level, int64_t rate,
                                                     int64_t count, int64_t log_frequency) {
  TraceSettings s;
  s.file = file;
  absl::StatusOr<bool> on = ParseLevel({level});
  if (!on.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--trace-level: ", on.status().message()));
  }
  s.timestamps = *on;
  if (rate < 1 || rate > kMaxU32) {
    return absl::InvalidArgumentError(absl::StrCat("--trace-rate: ", rate, " is not in [1, 2^32)"));
  }
  s.rate = static_cast<uint32_t>(rate);
  if (count < -1) {
    return absl::InvalidArgumentError(absl::StrCat("--trace-count: ", count, " < -1"));
  }
  s.count = count;
  if (log_frequency < 0 || log_frequency > kMaxU32) {
    return absl::InvalidArgumentError(
        absl::StrCat("--trace-log-frequency: ", log_frequency, " is not in [0, 2^32)"));
  }
  s.log_frequency = static_cast<uint32_t>(log_frequency);
  if (s.timestamps && s.file.empty()) {
    return absl::InvalidArgumentError("--trace-level TIMESTAMPS needs --trace-file");
  }
  return s;
}

void RequestTrace::Mark(TraceStep step, absl::Time t) {
  const int64_t ns = absl::ToUnixNanos(t);
  std::atomic<int64_t>& slot = ns_[static_cast<int>(step)];
  int64_t cur = slot.load(std::memory_order_relaxed);
  const bool start = IsStart(step);
  while (cur == 0 || (start ? ns < cur : ns > cur)) {
    if (slot.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) return;
  }
}

std::string RequestTrace::ToJson() const {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("id");
  w.Uint64(id_);
  w.Key("model_name");
  w.String(model_.data(), static_cast<rapidjson::SizeType>(model_.size()));
  w.Key("model_version");
  w.Int(1);
  w.Key("request_id");
  w.String(request_id_.data(), static_cast<rapidjson::SizeType>(request_id_.size()));
  w.EndObject();
  std::string out(buf.GetString(), buf.GetSize());
  buf.Clear();
  rapidjson::Writer<rapidjson::StringBuffer> t(buf);
  t.StartObject();
  t.Key("id");
  t.Uint64(id_);
  t.Key("timestamps");
  t.StartArray();
  auto step = [&t](const char* name, int64_t ns) {
    t.StartObject();
    t.Key("name");
    t.String(name);
    t.Key("ns");
    t.Int64(ns);
    t.EndObject();
  };
  for (int i = 0; i < kTraceSteps; ++i) {
    const int64_t ns = ns_[i].load(std::memory_order_relaxed);
    if (ns == 0) continue;
    if (i == static_cast<int>(TraceStep::kReceived)) {
      const bool grpc = wire_ == TraceWire::kGrpc;
      step(grpc ? "GRPC_WAITREAD_START" : "HTTP_RECV_START", ns);
      step(grpc ? "GRPC_WAITREAD_END" : "HTTP_RECV_END", ns);
    } else {
      step(kStepNames[i], ns);
    }
  }
  t.EndArray();
  t.EndObject();
  absl::StrAppend(&out, ",\n", absl::string_view(buf.GetString(), buf.GetSize()));
  return out;
}

TraceControl::TraceControl(TraceSettings initial)
    : initial_(initial), global_(initial), log_frequency_(initial.log_frequency) {
  hgpipe::MutexLock l(&mu_);
  any_on_.store(AnyOnLocked());
}

TraceControl::~TraceControl() {
  hgpipe::MutexLock l(&file_mu_);
  CloseFileLocked();
}

TraceControl::ModelSettings* TraceControl::FindLocked(absl::string_view model) {
  auto it = models_.find(model);
  return it == models_.end() ? nullptr : &it->second;
}

const TraceControl::ModelSettings* TraceControl::FindLocked(absl::string_view model) const {
  auto it = models_.find(model);
  return it == models_.end() ? nullptr : &it->second;
}

TraceControl::Sampling TraceControl::SamplingLocked(const ModelSettings* own) const {
  Sampling s{global_.timestamps, global_.rate, global_.count};
  if (own == nullptr) return s;
  return {own->timestamps.value_or(s.timestamps), own->rate.value_or(s.rate),
          own->count.value_or(s.count)};
}

bool TraceControl::AnyOnLocked() const {
  if (SamplingLocked(nullptr).on()) return true;
  for (const auto& [name, own] : models_) {
    if (SamplingLocked(&own).on()) return true;
  }
  return false;
}

NamedTraceSettings TraceControl::Get(absl::string_view model) const {
  Sampling s;
  uint32_t log_frequency;
  {
    hgpipe::MutexLock l(&mu_);
    s = SamplingLocked(FindLocked(model));
    log_frequency = global_.log_frequency;
  }
  return {
      {"trace_file", Values(initial_.file)},
      {"trace_level", Values(s.timestamps ? "TIMESTAMPS" : "OFF")},
      {"trace_rate", Values(absl::StrCat(s.rate))},
      {"trace_count", Values(absl::StrCat(s.count))},
      {"log_frequency", Values(absl::StrCat(log_frequency))},
      {"trace_mode", Values("triton")},
  };
}

absl::StatusOr<NamedTraceSettings> TraceControl::Update(absl::string_view model,
                                                        const NamedTraceSettings& update) {
  {
    hgpipe::MutexLock l(&mu_);
    TraceSettings global = global_;
    ModelSettings own;
    if (const ModelSettings* found = FindLocked(model); found != nullptr) own = *found;
    for (const auto& [name, value] : update) {
      // A cleared setting: the start-up value globally, the global one for
      // a model. An empty list clears too (gRPC cannot tell it from none).
      const bool clear = !value.has_value() || value->empty();
      if (name == "trace_file") {
        if (!clear && (value->size() != 1 || (*value)[0] != initial_.file)) {
          return Bad(name, absl::StrCat("the trace file is fixed at start-up (--trace-file ",
                                        Quote(initial_.file), ")"));
        }
      } else if (name == "trace_mode") {
        if (!clear && (value->size() != 1 || (*value)[0] != "triton")) {
          return Bad(name, "only \"triton\" is served (not OpenTelemetry)");
        }
      } else if (name == "trace_level") {
        std::optional<bool> v;
        if (!clear) {
          absl::StatusOr<bool> on = ParseLevel(*value);
          if (!on.ok()) return on.status();
          v = *on;
        }
        if (model.empty()) {
          global.timestamps = v.value_or(initial_.timestamps);
        } else {
          own.timestamps = v;
        }
      } else if (name == "trace_rate" || name == "trace_count") {
        const bool rate = name == "trace_rate";
        std::optional<int64_t> v;
        if (!clear) {
          absl::StatusOr<int64_t> n =
              rate ? ParseInt(name, *value, 1, kMaxU32) : ParseInt(name, *value, -1, INT64_MAX);
          if (!n.ok()) return n.status();
          v = *n;
        }
        if (model.empty() && rate) {
          global.rate = static_cast<uint32_t>(v.value_or(initial_.rate));
        } else if (model.empty()) {
          global.count = v.value_or(initial_.count);
        } else if (rate) {
          own.rate =
              v.has_value() ? std::optional<uint32_t>(static_cast<uint32_t>(*v)) : std::nullopt;
        } else {
          own.count = v;
        }
      } else if (name == "log_frequency") {
        if (clear) {
          if (model.empty()) global.log_frequency = initial_.log_frequency;
          continue;
        }
        if (!model.empty()) {
          return Bad(name, "is global: every model's traces go to the server's trace file");
        }
        absl::StatusOr<int64_t> n = ParseInt(name, *value, 0, kMaxU32);
        if (!n.ok()) return n.status();
        global.log_frequency = static_cast<uint32_t>(*n);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown trace setting ", Quote(name),
                         " (trace_file, trace_level, trace_rate, trace_count, log_frequency, "
                         "trace_mode)"));
      }
    }
    if (initial_.file.empty() && (global.timestamps || own.timestamps.value_or(false))) {
      return Bad("trace_level",
                 "TIMESTAMPS needs a trace file: start the server with --trace-file");
    }
    if (global.log_frequency != global_.log_frequency) {
      hgpipe::MutexLock f(&file_mu_);
      CloseFileLocked();
      log_frequency_ = global.log_frequency;
    }
    global_ = global;
    if (!model.empty()) models_[model] = own;  // `own` carries its count of requests seen
    any_on_.store(AnyOnLocked());
  }
  return Get(model);
}

std::unique_ptr<RequestTrace> TraceControl::Sample(absl::string_view model,
                                                   absl::string_view request_id, TraceWire wire) {
  if (!any_on_.load(std::memory_order_relaxed)) return nullptr;
  hgpipe::MutexLock l(&mu_);
  ModelSettings* own = FindLocked(model);
  const Sampling s = SamplingLocked(own);
  if (!s.on()) return nullptr;
  uint64_t& seen = own != nullptr && own->rate.has_value() ? own->seen : global_seen_;
  if (++seen % s.rate != 0) return nullptr;
  if (s.count > 0) {
    int64_t& count = own != nullptr && own->count.has_value() ? *own->count : global_.count;
    if (--count == 0) any_on_.store(AnyOnLocked());
  }
  // Only what the file will hold of the id is kept (it is client text).
  return std::make_unique<RequestTrace>(
      next_id_++, std::string(model), std::string(request_id.substr(0, kMaxTracedRequestId)), wire);
}

void TraceControl::Write(const RequestTrace& trace) {
  if (initial_.file.empty()) return;
  const std::string json = trace.ToJson();
  hgpipe::MutexLock l(&file_mu_);
  if (out_ == nullptr) {
    std::string path = initial_.file;
    if (log_frequency_ > 0 || base_used_) absl::StrAppend(&path, ".", next_index_++);
    base_used_ = base_used_ || log_frequency_ == 0;
    out_ = std::fopen(path.c_str(), "w");
    if (out_ == nullptr) {
      LOG(WARNING) << "trace " << trace.id() << " dropped: cannot open " << path << ": "
                   << std::strerror(errno);
      return;
    }
    std::fputs("[\n", out_);
  } else {
    std::fputs(",\n", out_);
  }
  std::fwrite(json.data(), 1, json.size(), out_);
  ++in_file_;
  if (log_frequency_ > 0 && in_file_ >= log_frequency_) CloseFileLocked();
}

void TraceControl::CloseFileLocked() {
  if (out_ == nullptr) return;
  std::fputs("\n]\n", out_);
  if (std::fclose(out_) != 0) {
    LOG(WARNING) << "trace file: closing failed: " << std::strerror(errno);
  }
  out_ = nullptr;
  in_file_ = 0;
}

}  // namespace hgpipe::server
