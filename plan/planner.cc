#include "plan/planner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "accel/pipeline_model.h"
#include "base/status_macros.h"

namespace hgpipe::plan {
namespace {

absl::Status Bad(absl::string_view item, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("workload '", item, "': ", what));
}

absl::StatusOr<double> Number(absl::string_view item, absl::string_view key,
                              absl::string_view value, double min) {
  double v;
  if (!absl::SimpleAtod(value, &v) || !std::isfinite(v) || v < min) {
    return Bad(item, absl::StrCat(key, "=", value, " is not a number >= ", min));
  }
  return v;
}

absl::StatusOr<uint64_t> Count(absl::string_view item, absl::string_view key,
                               absl::string_view value, uint64_t min) {
  uint64_t v;
  if (!absl::SimpleAtoi(value, &v) || v < min) {
    return Bad(item, absl::StrCat(key, "=", value, " is not an integer >= ", min));
  }
  return v;
}

absl::Duration Ms(double ms) { return absl::Microseconds(ms * 1e3); }

// Applies one model key to `m`.
absl::Status ApplyModelKey(absl::string_view item, absl::string_view key, absl::string_view value,
                           ModelSpec& m) {
  if (key == "boards") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
    m.boards = static_cast<int>(std::min<uint64_t>(v, 1 << 20));
  } else if (key == "ii_cycles") {
    ASSIGN_OR_RETURN(m.timing.interval_cycles, Count(item, key, value, 1));
  } else if (key == "latency_cycles") {
    ASSIGN_OR_RETURN(m.timing.latency_cycles, Count(item, key, value, 1));
  } else if (key == "clock_mhz") {
    ASSIGN_OR_RETURN(double mhz, Number(item, key, value, 1e-6));
    m.timing.clock_hz = mhz * 1e6;
  } else if (key == "overhead_us") {
    ASSIGN_OR_RETURN(double us, Number(item, key, value, 0));
    m.timing.run_overhead = absl::Microseconds(us);
  } else if (key == "host_us") {
    ASSIGN_OR_RETURN(double us, Number(item, key, value, 0));
    m.host_overhead = absl::Microseconds(us);
    m.host_overhead_quantiles.clear();
  } else if (key == "max_run") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
    m.options.max_images_per_run = static_cast<uint32_t>(std::min<uint64_t>(v, 1 << 20));
  } else if (key == "max_queue") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
    m.options.max_queue_images = static_cast<uint32_t>(std::min<uint64_t>(v, 1u << 30));
  } else if (key == "levels") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
    m.options.priority_levels = static_cast<uint32_t>(std::min<uint64_t>(v, 64));
  } else if (key == "default_priority") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
    m.options.default_priority = static_cast<uint32_t>(std::min<uint64_t>(v, 64));
  } else if (key == "low_run") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
    m.options.low_priority_run_images = static_cast<uint32_t>(std::min<uint64_t>(v, 1 << 20));
  } else if (key == "starvation_ms") {
    ASSIGN_OR_RETURN(double ms, Number(item, key, value, 0));
    m.options.max_starvation = Ms(ms);
  } else if (key == "queue_delay_us") {
    ASSIGN_OR_RETURN(double us, Number(item, key, value, 0));
    m.options.max_queue_delay = absl::Microseconds(us);
  } else if (key == "board_max_run") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
    m.board_max_images_per_run = static_cast<uint32_t>(std::min<uint64_t>(v, 1 << 20));
  } else if (key == "slots") {
    ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 0));
    m.board_slots = static_cast<int>(std::min<uint64_t>(v, 4096));
  } else {
    return Bad(item, absl::StrCat("unknown key '", key, "'"));
  }
  return absl::OkStatus();
}

void AppendStep(std::string* out, const PlanStep& s) {
  absl::StrAppend(out, "{\"boards\":", s.boards, ",\"meets\":", s.meets ? "true" : "false",
                  ",\"why_not\":\"");
  for (char c : s.why_not) {
    if (c == '"' || c == '\\') *out += '\\';
    *out += c;
  }
  absl::StrAppend(out, "\",\"result\":", ModelResultToJson(s.result), "}");
}

}  // namespace

absl::StatusOr<std::vector<PlanTarget>> ParseWorkloads(const std::vector<std::string>& items,
                                                       const ModelSpec& model_template) {
  std::vector<PlanTarget> targets;
  std::map<std::string, size_t> by_name;
  // Model keys already given per model, with the item that gave them.
  std::map<std::string, std::map<std::string, std::string>> model_keys;
  for (const std::string& item : items) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    const std::string name(parts[0]);
    if (name.empty() || name.find('=') != std::string::npos) {
      return Bad(item, "must start with the model name (NAME:rate=R:...)");
    }
    auto [it, added] = by_name.emplace(name, targets.size());
    if (added) {
      PlanTarget t;
      t.model = model_template;
      t.model.name = name;
      t.model.streams.clear();
      targets.push_back(std::move(t));
    }
    PlanTarget& t = targets[it->second];
    StreamSpec s;
    std::optional<absl::Duration> objective;
    bool has_rate = false;
    for (size_t i = 1; i < parts.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
      const absl::string_view key = kv.first, value = kv.second;
      if (key.empty() || parts[i].find('=') == absl::string_view::npos) {
        return Bad(item, absl::StrCat("'", parts[i], "' is not KEY=VALUE"));
      }
      if (key == "rate") {
        ASSIGN_OR_RETURN(s.rate, Number(item, key, value, 0));
        if (s.rate <= 0) return Bad(item, "rate must be > 0");
        has_rate = true;
      } else if (key == "images") {
        ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 1));
        s.images_per_request = static_cast<uint32_t>(std::min<uint64_t>(v, 1 << 20));
      } else if (key == "arrivals") {
        if (value == "poisson") {
          s.arrivals = Arrivals::kPoisson;
        } else if (value == "constant") {
          s.arrivals = Arrivals::kConstant;
        } else {
          return Bad(item, absl::StrCat("arrivals must be poisson or constant, not '", value, "'"));
        }
      } else if (key == "priority") {
        ASSIGN_OR_RETURN(uint64_t v, Count(item, key, value, 0));
        s.priority = static_cast<uint32_t>(std::min<uint64_t>(v, 1 << 20));
      } else if (key == "timeout_ms") {
        ASSIGN_OR_RETURN(double ms, Number(item, key, value, 0));
        if (ms <= 0) return Bad(item, "timeout_ms must be > 0");
        s.timeout = Ms(ms);
      } else if (key == "p99_ms") {
        ASSIGN_OR_RETURN(double ms, Number(item, key, value, 0));
        if (ms <= 0) return Bad(item, "p99_ms must be > 0");
        objective = Ms(ms);
      } else if (key == "stream") {
        s.name = std::string(value);
      } else {
        std::string& seen = model_keys[name][std::string(key)];
        if (!seen.empty() && seen != value) {
          return Bad(item, absl::StrCat("model ", name, " has ", key, "=", seen,
                                        " in another workload item"));
        }
        seen = std::string(value);
        RETURN_IF_ERROR(ApplyModelKey(item, key, value, t.model));
      }
    }
    if (!has_rate) return Bad(item, "rate=R (requests/s) is required");
    t.model.streams.push_back(std::move(s));
    t.p99_objectives.push_back(objective);
  }
  for (PlanTarget& t : targets) {
    const scheduler::ModelOptions& o = t.model.options;
    // Like hgpipe-server, which sizes a board's runs from the model's config.
    if (!model_keys[t.model.name].contains("board_max_run")) {
      t.model.board_max_images_per_run = o.max_images_per_run;
    }
    if (o.default_priority > o.priority_levels) {
      return absl::InvalidArgumentError(absl::StrCat("workload ", t.model.name,
                                                     ": default_priority=", o.default_priority,
                                                     " is above levels=", o.priority_levels));
    }
    for (const StreamSpec& s : t.model.streams) {
      if (s.priority > o.priority_levels) {
        return absl::InvalidArgumentError(
            absl::StrCat("workload ", t.model.name, ": priority=", s.priority,
                         " is above levels=", o.priority_levels, " (add levels=N to the model)"));
      }
    }
    if (absl::Status st = t.model.timing.Validate(); !st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("workload ", t.model.name, ": ", st.message()));
    }
  }
  return targets;
}

absl::Status ParseHostOverhead(absl::string_view spec, ModelSpec& model) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("host overhead '", spec, "': ", what,
                     " (give microseconds, or PERCENTILE:MICROSECONDS,... e.g. "
                     "50:950,99:2400,100:3500)"));
  };
  if (spec.find(':') == absl::string_view::npos) {
    double us;
    if (!absl::SimpleAtod(spec, &us) || !std::isfinite(us) || us < 0) {
      return bad("not a number >= 0");
    }
    model.host_overhead = absl::Microseconds(us);
    model.host_overhead_quantiles.clear();
    return absl::OkStatus();
  }
  std::vector<std::pair<double, absl::Duration>> points;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> pv =
        absl::StrSplit(item, absl::MaxSplits(':', 1));
    double pct, us;
    if (!absl::SimpleAtod(pv.first, &pct) || !absl::SimpleAtod(pv.second, &us) ||
        !(pct >= 0 && pct <= 100) || !std::isfinite(us) || us < 0) {
      return bad(absl::StrCat("'", item, "' is not PERCENTILE:MICROSECONDS"));
    }
    if (!points.empty() &&
        (pct / 100 <= points.back().first || absl::Microseconds(us) < points.back().second)) {
      return bad("percentiles must increase and values must not decrease");
    }
    points.emplace_back(pct / 100, absl::Microseconds(us));
  }
  if (points.empty()) return bad("no points");
  if (points.front().first > 0) points.insert(points.begin(), {0.0, points.front().second});
  if (points.back().first < 1) points.emplace_back(1.0, points.back().second);
  model.host_overhead = absl::ZeroDuration();
  model.host_overhead_quantiles = std::move(points);
  return absl::OkStatus();
}

absl::Duration MinLatency(const ModelSpec& model, const StreamSpec& stream) {
  const accel::PipelineModel timing(model.timing, accel::DeviceGeometry{}.input_bytes());
  const absl::Duration host = model.host_overhead_quantiles.empty()
                                  ? model.host_overhead
                                  : model.host_overhead_quantiles.front().second;
  return host + model.timing.run_overhead + timing.image_time() * (stream.images_per_request - 1) +
         timing.latency();
}

bool MeetsObjectives(const PlanTarget& target, const ModelResult& result, std::string* why_not) {
  std::vector<std::string> reasons;
  for (size_t i = 0; i < result.streams.size(); ++i) {
    const StreamResult& s = result.streams[i];
    if (!s.failed.empty()) {
      uint64_t n = 0;
      for (const auto& [code, count] : s.failed) n += count;
      reasons.push_back(absl::StrCat("stream ", s.name, ": ", n, " of ", s.requests,
                                     " requests failed (", s.failed.begin()->first, ")"));
    }
    const std::optional<absl::Duration>& objective = target.p99_objectives[i];
    if (!objective.has_value()) continue;
    const double limit_ms = absl::ToDoubleMilliseconds(*objective);
    if (s.requests_ok == 0) {
      reasons.push_back(absl::StrCat("stream ", s.name, ": no request answered"));
    } else if (s.latency.p99 > limit_ms) {
      reasons.push_back(
          absl::StrFormat("stream %s: p99 %.3f ms > %.3f ms", s.name, s.latency.p99, limit_ms));
    }
  }
  if (why_not != nullptr) *why_not = absl::StrJoin(reasons, "; ");
  return reasons.empty();
}

absl::StatusOr<PlanAnswer> PlanBoards(const PlanTarget& target, const PlanOptions& options) {
  const ModelSpec& model = target.model;
  PlanAnswer answer;
  answer.model = model.name;
  if (target.p99_objectives.size() != model.streams.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", model.name, ": one objective (or none) per stream is needed"));
  }
  bool any = false;
  for (size_t i = 0; i < model.streams.size(); ++i) {
    const std::optional<absl::Duration>& objective = target.p99_objectives[i];
    if (!objective.has_value()) continue;
    any = true;
    const absl::Duration least = MinLatency(model, model.streams[i]);
    answer.min_latency = std::max(answer.min_latency, least);
    if (*objective < least) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "model %s: the p99 objective %.3f ms is below the least latency a "
          "request can have, %.3f ms (host overhead + run overhead + pipeline "
          "latency + input time of its images): no board count meets it",
          model.name, absl::ToDoubleMilliseconds(*objective), absl::ToDoubleMilliseconds(least)));
    }
  }
  if (!any) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", model.name, ": no p99_ms objective to plan for (or give --boards to simulate)"));
  }
  if (options.max_boards < 1) {
    return absl::InvalidArgumentError("max_boards must be >= 1");
  }
  const accel::PipelineModel timing(model.timing, accel::DeviceGeometry{}.input_bytes());
  const double per_board = 1.0 / absl::ToDoubleSeconds(timing.image_time());
  double offered = 0;
  for (const StreamSpec& s : model.streams) offered += s.rate * s.images_per_request;
  // Fewer boards than this cannot keep up (utilization above 100 %).
  answer.lower_bound = std::max(1, static_cast<int>(std::ceil(offered / per_board - 1e-9)));
  for (int n = answer.lower_bound; n <= options.max_boards; ++n) {
    SimulationSpec spec = options.simulation;
    spec.models = {model};
    spec.models[0].boards = n;
    ASSIGN_OR_RETURN(SimulationResult r, Simulate(spec));
    PlanStep step;
    step.boards = n;
    step.result = std::move(r.models[0]);
    step.meets = MeetsObjectives(target, step.result, &step.why_not);
    const bool meets = step.meets;
    answer.tried.push_back(std::move(step));
    if (meets) {
      answer.boards = n;
      break;
    }
  }
  return answer;
}

std::string PlanAnswerToJson(const PlanAnswer& a) {
  std::string out = "{\"model\":\"";
  for (char c : a.model) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  absl::StrAppendFormat(&out,
                        "\",\"boards\":%d,\"found\":%s,\"lower_bound\":%d,"
                        "\"min_latency_ms\":%.6f,\"tried\":[",
                        a.boards, a.boards > 0 ? "true" : "false", a.lower_bound,
                        absl::ToDoubleMilliseconds(a.min_latency));
  for (size_t i = 0; i < a.tried.size(); ++i) {
    if (i) out += ",";
    AppendStep(&out, a.tried[i]);
  }
  out += "]}";
  return out;
}

}  // namespace hgpipe::plan
