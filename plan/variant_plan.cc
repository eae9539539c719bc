#include "plan/variant_plan.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace hgpipe::plan {
namespace {

absl::Status Bad(absl::string_view item, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("variant '", item, "': ", what));
}

const char* PolicyName(VariantPolicy p) {
  return p == VariantPolicy::kReject ? "reject" : "variants";
}

}  // namespace

absl::StatusOr<VariantPolicy> ParseVariantPolicy(absl::string_view name) {
  if (name == "reject") return VariantPolicy::kReject;
  if (name == "variants") return VariantPolicy::kVariants;
  return absl::InvalidArgumentError(
      absl::StrCat("policy '", name, "': expected reject or variants"));
}

absl::StatusOr<std::vector<VariantSpec>> ParseVariants(absl::string_view spec) {
  std::vector<VariantSpec> out;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    VariantSpec v;
    v.name = std::string(parts[0]);
    if (v.name.empty()) return Bad(item, "no name");
    for (size_t i = 1; i < parts.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(parts[i], '=');
      double x;
      if (!absl::SimpleAtod(kv.second, &x) || !std::isfinite(x) || x <= 0) {
        return Bad(item, absl::StrCat(kv.first, "=", kv.second, " is not a number > 0"));
      }
      if (kv.first == "top1") {
        v.top1 = x;
      } else if (kv.first == "ii_cycles") {
        v.timing.interval_cycles = static_cast<uint64_t>(x);
      } else if (kv.first == "latency_cycles") {
        v.timing.latency_cycles = static_cast<uint64_t>(x);
      } else if (kv.first == "clock_mhz") {
        v.timing.clock_hz = x * 1e6;
      } else if (kv.first == "overhead_us") {
        v.timing.run_overhead = absl::Microseconds(x);
      } else {
        return Bad(item, absl::StrCat("unknown key '", kv.first, "'"));
      }
    }
    if (!(v.top1 > 0 && v.top1 <= 1)) return Bad(item, "top1 in (0, 1] is required");
    if (absl::Status s = v.timing.Validate(); !s.ok()) return Bad(item, s.message());
    for (const VariantSpec& o : out) {
      if (o.name == v.name) return Bad(item, "appears twice");
    }
    out.push_back(std::move(v));
  }
  if (out.empty()) return absl::InvalidArgumentError("no variants given");
  std::stable_sort(out.begin(), out.end(),
                   [](const VariantSpec& a, const VariantSpec& b) { return a.top1 > b.top1; });
  return out;
}

absl::StatusOr<VariantPlanAnswer> PlanVariants(const VariantTarget& target,
                                               const PlanOptions& options) {
  if (target.variants.empty()) return absl::InvalidArgumentError("no variants");
  if (!(target.rate > 0) || !std::isfinite(target.rate)) {
    return absl::InvalidArgumentError("rate must be > 0");
  }
  if (!(target.goodput > 0 && target.goodput <= 1)) {
    return absl::InvalidArgumentError("goodput must be in (0, 1]");
  }
  const double best = target.variants.front().top1;
  if (target.min_accuracy.has_value() && *target.min_accuracy > best) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "no variant reaches the minimum accuracy %.4f; the best available is '%s' with "
        "top-1 %.4f",
        *target.min_accuracy, target.variants.front().name, best));
  }
  ModelSpec m = target.model;
  m.boards = 1;
  StreamSpec s;
  s.rate = target.rate;
  s.timeout = target.deadline;
  if (target.policy == VariantPolicy::kReject) {
    m.variants = {target.variants.front()};
  } else {
    m.variants = target.variants;
    s.min_accuracy = target.min_accuracy.value_or(0.0);
  }
  m.timing = m.variants.front().timing;
  m.streams = {s};
  // Fewer boards than the fastest accepted variant needs cannot keep up.
  double fastest = 0;
  for (const VariantSpec& v : m.variants) {
    if (v.top1 >= s.min_accuracy.value_or(best)) {
      fastest = std::max(fastest, v.timing.max_images_per_second());
    }
  }
  VariantPlanAnswer answer;
  answer.lower_bound = target.boards > 0
                           ? target.boards
                           : std::max(1, static_cast<int>(std::ceil(target.rate / fastest - 1e-9)));
  const int last = target.boards > 0 ? target.boards : options.max_boards;
  for (int n = answer.lower_bound; n <= last; ++n) {
    SimulationSpec spec = options.simulation;
    spec.scheduler.reprogram = true;
    m.boards = n;
    spec.models = {m};
    ASSIGN_OR_RETURN(SimulationResult r, Simulate(spec));
    VariantPlanStep step;
    step.boards = n;
    step.result = std::move(r.models[0]);
    step.meets = step.result.goodput >= target.goodput;
    const bool meets = step.meets;
    answer.tried.push_back(std::move(step));
    if (meets) {
      answer.boards = n;
      break;
    }
  }
  return answer;
}

std::string VariantPlanAnswerToJson(const VariantTarget& target, const VariantPlanAnswer& answer) {
  const ModelResult* r = answer.tried.empty() ? nullptr : &answer.tried.back().result;
  const int boards = answer.tried.empty() ? 0 : answer.tried.back().boards;
  std::string out = absl::StrFormat(
      "{\"policy\":\"%s\",\"boards\":%d,\"meets\":%s,\"rate\":%.3f,\"deadline_ms\":%.6f,"
      "\"min_accuracy\":%s,\"goodput_target\":%.6f,",
      PolicyName(target.policy), boards, answer.boards > 0 ? "true" : "false", target.rate,
      absl::ToDoubleMilliseconds(target.deadline),
      target.min_accuracy.has_value() ? absl::StrFormat("%.6f", *target.min_accuracy) : "null",
      target.goodput);
  if (r != nullptr) {
    uint64_t answered = 0;
    for (const auto& [name, n] : r->requests_by_variant) answered += n;
    absl::StrAppendFormat(&out,
                          "\"goodput\":%.6f,\"mean_accuracy\":%.6f,\"p99_ms\":%.6f,"
                          "\"board_moves\":%d,\"mix\":{",
                          r->goodput, r->mean_accuracy, r->latency.p99, r->board_moves);
    bool first = true;
    for (const VariantSpec& v : target.variants) {
      auto it = r->requests_by_variant.find(v.name);
      const uint64_t n = it == r->requests_by_variant.end() ? 0 : it->second;
      absl::StrAppendFormat(&out, "%s\"%s\":%.6f", first ? "" : ",", v.name,
                            answered > 0 ? static_cast<double>(n) / answered : 0.0);
      first = false;
    }
    out += "},";
  }
  out += "\"tried\":[";
  for (size_t i = 0; i < answer.tried.size(); ++i) {
    if (i) out += ",";
    absl::StrAppend(&out, "{\"boards\":", answer.tried[i].boards,
                    ",\"meets\":", answer.tried[i].meets ? "true" : "false",
                    ",\"result\":", ModelResultToJson(answer.tried[i].result), "}");
  }
  out += "]}";
  return out;
}

}  // namespace hgpipe::plan
