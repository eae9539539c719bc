// hgpipe-plan: capacity questions answered by simulation (plan/planner.h):
// given models, their arrival rates, latency objectives and board types, how
// many boards, at what utilization, with what p50 and p99 latency.
//
//   hgpipe-plan --workload verify:rate=20000:p99_ms=5
//   hgpipe-plan --workload verify:rate=2000:priority=1:p99_ms=3:levels=2
//               --workload verify:rate=15000:priority=2      (one command)
//   hgpipe-plan --workload verify:rate=5000 --boards 2 --json
//
// Without --boards, each model's board count is searched upward from the
// least that covers its load until its p99 objectives are met with no
// failed request. With --boards N (or boards=N in a workload), the model is
// simulated on N boards and reported. Boards default to HG-PIPE DeiT-tiny
// (425 MHz, II 57,624 cycles, latency 816,584 cycles, 10 us run overhead);
// see docs/planning.md.
//
// Exit status: 0 when every objective is met; 3 when some model meets its
// objectives with no board count up to --max-boards (or fails them at its
// given count); 2 for bad flags; 1 if a simulation fails.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/flags.h"
#include "plan/planner.h"
#include "plan/simulation.h"
#include "plan/variant_plan.h"

ABSL_FLAG(std::string, workload, "",
          "NAME:rate=R[:images=N][:p99_ms=T][:KEY=VALUE...]; repeat the flag "
          "or separate items with commas (keys: plan/planner.h, "
          "docs/planning.md).");
ABSL_FLAG(int, boards, 0,
          "Simulate this many boards per model instead of searching (0: "
          "search for the least count meeting the objectives).");
ABSL_FLAG(int, max_boards, 64, "Search no further than this many boards.");
ABSL_FLAG(double, seconds, 10, "Simulated seconds of arrivals per simulation.");
ABSL_FLAG(double, warmup_seconds, 1, "Simulated seconds at the start that are not measured.");
ABSL_FLAG(double, host_cpu_us, 0,
          "Host CPU time per request, queued on --host-cores cores (first come, "
          "first served) before the host overhead; part of the overhead, not "
          "added to it (0: no host queue)");
ABSL_FLAG(int, host_cores, 1, "Host cores serving requests (with --host-cpu-us)");
ABSL_FLAG(std::string, host_overhead_us, "0",
          "Host time per request between arrival and the scheduler (gRPC, "
          "preprocessing), in us: a constant, or its distribution as "
          "PERCENTILE:US,... (e.g. 50:950,99:2400,100:3500); calibrate it "
          "against the server (docs/planning.md).");
ABSL_FLAG(int, dispatch_lead_us, 1000,
          "Scheduler dispatch lead (hgpipe-server --dispatch-lead-us).");
ABSL_FLAG(int, max_images_per_run, 32,
          "Default largest run (a model config's batching.max_images_per_run).");
ABSL_FLAG(int, max_queue_images, 4096, "Default queue limit (batching.max_queue_images).");
ABSL_FLAG(int, board_slots, 0,
          "Runs queued on a board at once (hgpipe-server --board-slots); 0: "
          "from the pipeline depth.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the arrival processes.");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of a report.");
ABSL_FLAG(std::string, variants, "",
          "Plan a model's bitstream variants instead of --workload: "
          "NAME:top1=F[:ii_cycles=C][:latency_cycles=C][:clock_mhz=F][:overhead_us=U],... "
          "(docs/planning.md, \"Variants\").");
ABSL_FLAG(std::string, policy, "variants",
          "With --variants: reject (the most accurate variant only) or variants "
          "(routing above --min-accuracy, boards moved between variants).");
ABSL_FLAG(double, rate, 0, "With --variants: offered requests/s (one image each, Poisson).");
ABSL_FLAG(double, load, 0,
          "With --variants and --boards: offered load as a multiple of the most "
          "accurate variant's capacity on --boards boards (instead of --rate).");
ABSL_FLAG(double, deadline_ms, 5, "With --variants: each request's deadline.");
ABSL_FLAG(double, min_accuracy, 0,
          "With --variants: the requests' accuracy floor (top-1 fraction); 0: any variant.");
ABSL_FLAG(double, goodput, 0.99,
          "With --variants: the share of requests to answer within the deadline.");
ABSL_FLAG(double, program_ms, 1000, "With --variants: how long reprogramming a board takes.");
ABSL_FLAG(double, move_interval_ms, 1000,
          "With --variants: the router's least time between two board moves.");

namespace hgpipe::plan {
namespace {

int Usage(const std::string& message) {
  std::fprintf(stderr, "hgpipe-plan: %s\n", message.c_str());
  return 2;
}

// absl keeps only the last --workload; every occurrence counts here.
std::vector<std::string> CollectWorkloads(int argc, char** argv) {
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--") break;
    for (absl::string_view name : {"--workload", "-workload"}) {
      if (a == name && i + 1 < argc) {
        values.push_back(argv[i + 1]);
      } else if (absl::StartsWith(a, absl::StrCat(name, "="))) {
        values.push_back(std::string(a.substr(name.size() + 1)));
      }
    }
  }
  return values;
}

void PrintModel(const PlanTarget& target, const PlanAnswer& answer, bool searched) {
  const ModelSpec& m = target.model;
  const PlanStep* last = answer.tried.empty() ? nullptr : &answer.tried.back();
  double offered = 0;
  for (const StreamSpec& s : m.streams) offered += s.rate * s.images_per_request;
  const double per_board =
      last != nullptr ? last->result.capacity_images_per_second / last->boards : 0;
  std::printf(
      "model %s: %.1f images/s offered in %zu stream(s); one board: "
      "%.1f images/s at most, %.3f ms least latency\n",
      m.name.c_str(), offered, m.streams.size(), per_board,
      absl::ToDoubleMilliseconds(answer.min_latency));
  std::printf("  %6s %7s %11s %9s %9s %9s %9s  %s\n", "boards", "util", "images/s", "p50 ms",
              "p99 ms", "max ms", "qwait99", "verdict");
  for (const PlanStep& s : answer.tried) {
    const ModelResult& r = s.result;
    std::printf("  %6d %6.1f%% %11.1f %9.3f %9.3f %9.3f %9.3f  %s\n", s.boards, 100 * r.utilization,
                r.images_per_second, r.latency.p50, r.latency.p99, r.latency.max, r.queue_wait.p99,
                s.meets ? "meets" : s.why_not.c_str());
    if (r.streams.size() > 1) {
      for (const StreamResult& st : r.streams) {
        std::printf(
            "         stream %-10s prio %u  %9.1f req/s  p50 %.3f  "
            "p99 %.3f  max %.3f ms  ok %llu/%llu\n",
            st.name.c_str(), st.priority, st.rate, st.latency.p50, st.latency.p99, st.latency.max,
            static_cast<unsigned long long>(st.requests_ok),
            static_cast<unsigned long long>(st.requests));
      }
    }
  }
  if (answer.boards > 0) {
    const ModelResult& r = last->result;
    for (size_t i = 0; i < r.streams.size(); ++i) {
      if (!target.p99_objectives[i].has_value()) continue;
      const double limit = absl::ToDoubleMilliseconds(*target.p99_objectives[i]);
      std::printf(
          "  stream %s: p99 %.3f ms <= objective %.3f ms (margin "
          "%.3f ms, %.1f %%)\n",
          r.streams[i].name.c_str(), r.streams[i].latency.p99, limit,
          limit - r.streams[i].latency.p99, 100 * (limit - r.streams[i].latency.p99) / limit);
    }
    std::printf(
        "  answer: %d board(s), %.1f %% utilized, %.1f images/s, "
        "p50 %.3f ms, p99 %.3f ms\n",
        answer.boards, 100 * r.utilization, r.images_per_second, r.latency.p50, r.latency.p99);
  } else if (searched) {
    std::printf("  answer: no board count from %d to %d meets the objectives\n", answer.lower_bound,
                answer.tried.empty() ? answer.lower_bound - 1 : answer.tried.back().boards);
  } else {
    std::printf("  answer: %d board(s) do not meet the objectives\n",
                last != nullptr ? last->boards : 0);
  }
}

void PrintVariants(const VariantTarget& t, const VariantPlanAnswer& a) {
  std::printf(
      "model %s, policy %s: %.1f requests/s offered, deadline %.3f ms, "
      "accuracy floor %s, goodput target %.1f %%\n",
      t.model.name.c_str(), t.policy == VariantPolicy::kReject ? "reject" : "variants", t.rate,
      absl::ToDoubleMilliseconds(t.deadline),
      t.min_accuracy.has_value() ? absl::StrFormat("%.4f", *t.min_accuracy).c_str() : "none",
      100 * t.goodput);
  for (const VariantSpec& v : t.variants) {
    std::printf("  variant %-10s top-1 %.2f %%  %.1f images/s a board, latency %.3f ms\n",
                v.name.c_str(), 100 * v.top1, v.timing.max_images_per_second(),
                absl::ToDoubleMilliseconds(v.timing.latency()));
  }
  std::printf("  %6s %8s %9s %9s %6s  %s\n", "boards", "goodput", "mean_acc", "p99 ms", "moves",
              "mix (requests answered)");
  for (const VariantPlanStep& s : a.tried) {
    const ModelResult& r = s.result;
    std::string mix;
    for (const auto& [name, n] : r.requests_by_variant) {
      absl::StrAppend(&mix, mix.empty() ? "" : ", ", name, " ", n);
    }
    std::printf("  %6d %7.2f%% %8.2f%% %9.3f %6llu  %s%s\n", s.boards, 100 * r.goodput,
                100 * r.mean_accuracy, r.latency.p99,
                static_cast<unsigned long long>(r.board_moves), mix.c_str(),
                s.meets ? "  meets" : "");
  }
  if (a.boards > 0) {
    std::printf("  answer: %d board(s)\n", a.boards);
  } else {
    std::printf("  answer: no board count from %d to %d meets the goodput target\n", a.lower_bound,
                a.tried.empty() ? a.lower_bound : a.tried.back().boards);
  }
}

// hgpipe-plan --variants ...: the target mode and the policies compared.
int VariantsMain(const ModelSpec& model_template, PlanOptions options, bool json) {
  absl::StatusOr<std::vector<VariantSpec>> variants = ParseVariants(absl::GetFlag(FLAGS_variants));
  if (!variants.ok()) return Usage(absl::StrCat("--variants: ", variants.status().message()));
  absl::StatusOr<VariantPolicy> policy = ParseVariantPolicy(absl::GetFlag(FLAGS_policy));
  if (!policy.ok()) return Usage(absl::StrCat("--policy: ", policy.status().message()));
  VariantTarget t;
  t.model = model_template;
  t.model.name = "model";
  t.variants = *std::move(variants);
  t.policy = *policy;
  t.boards = model_template.boards;
  const double deadline_ms = absl::GetFlag(FLAGS_deadline_ms);
  const double floor = absl::GetFlag(FLAGS_min_accuracy);
  const double load = absl::GetFlag(FLAGS_load);
  const double program_ms = absl::GetFlag(FLAGS_program_ms);
  const double move_ms = absl::GetFlag(FLAGS_move_interval_ms);
  t.rate = absl::GetFlag(FLAGS_rate);
  t.goodput = absl::GetFlag(FLAGS_goodput);
  if (!(deadline_ms > 0)) return Usage("--deadline-ms must be > 0");
  if (!(floor >= 0 && floor <= 1)) return Usage("--min-accuracy must be in [0, 1]");
  if (!(program_ms >= 0) || !(move_ms >= 0)) {
    return Usage("--program-ms and --move-interval-ms must be >= 0");
  }
  if (load > 0) {
    if (t.boards == 0) return Usage("--load needs --boards");
    t.rate = load * t.boards * t.variants.front().timing.max_images_per_second();
  }
  if (!(t.rate > 0)) return Usage("--variants needs --rate R or --load X with --boards N");
  t.deadline = absl::Microseconds(deadline_ms * 1e3);
  if (floor > 0) t.min_accuracy = floor;
  t.model.program_time = absl::Microseconds(program_ms * 1e3);
  t.model.min_move_interval = absl::Microseconds(move_ms * 1e3);
  const absl::Time wall_start = absl::Now();
  absl::StatusOr<VariantPlanAnswer> a = PlanVariants(t, options);
  if (!a.ok()) {
    if (absl::IsInvalidArgument(a.status())) return Usage(std::string(a.status().message()));
    std::fprintf(stderr, "hgpipe-plan: %s\n", a.status().ToString().c_str());
    return 1;
  }
  if (json) {
    std::printf("%s\n", VariantPlanAnswerToJson(t, *a).c_str());
  } else {
    PrintVariants(t, *a);
    std::printf("(%.2f s of wall time)\n", absl::ToDoubleSeconds(absl::Now() - wall_start));
  }
  return a->boards > 0 ? 0 : 3;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "answers capacity questions by simulating the scheduler.\n"
      "  hgpipe-plan --workload NAME:rate=R[:images=N][:p99_ms=T][:...] "
      "[--boards N] [--max-boards 64] [--seconds 10] [--json]");
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  DashesToUnderscores(argc, argv);
  // Debian's Abseil keeps absl::Mutex deadlock detection on (a global lock
  // and a graph lookup per acquisition); a simulation takes millions of
  // locks, and its scheduler code is tested elsewhere with detection on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::vector<std::string> workload_flags = CollectWorkloads(argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    return Usage(absl::StrCat("unexpected argument '", positional[1], "'"));
  }
  std::vector<std::string> items;
  for (const std::string& f : workload_flags) {
    for (absl::string_view item : absl::StrSplit(f, ',', absl::SkipEmpty())) {
      items.emplace_back(item);
    }
  }
  const bool variant_mode = !absl::GetFlag(FLAGS_variants).empty();
  if (items.empty() && !variant_mode) {
    return Usage("no --workload given (e.g. --workload verify:rate=20000:p99_ms=5)");
  }
  if (!items.empty() && variant_mode) {
    return Usage("give --workload or --variants, not both");
  }
  const int boards = absl::GetFlag(FLAGS_boards);
  const int max_boards = absl::GetFlag(FLAGS_max_boards);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const double warmup = absl::GetFlag(FLAGS_warmup_seconds);
  const std::string host_us = absl::GetFlag(FLAGS_host_overhead_us);
  const int lead_us = absl::GetFlag(FLAGS_dispatch_lead_us);
  const int max_run = absl::GetFlag(FLAGS_max_images_per_run);
  const int max_queue = absl::GetFlag(FLAGS_max_queue_images);
  const int slots = absl::GetFlag(FLAGS_board_slots);
  if (boards < 0) return Usage("--boards must be >= 0");
  if (max_boards < 1) return Usage("--max-boards must be >= 1");
  if (!(seconds > 0)) return Usage("--seconds must be > 0");
  if (!(warmup >= 0) || warmup >= seconds) {
    return Usage("--warmup-seconds must be >= 0 and below --seconds");
  }
  if (lead_us < 0) return Usage("--dispatch-lead-us must be >= 0");
  if (max_run < 1) return Usage("--max-images-per-run must be >= 1");
  if (max_queue < 1) return Usage("--max-queue-images must be >= 1");
  if (slots < 0) return Usage("--board-slots must be >= 0");

  ModelSpec model_template;
  model_template.boards = boards;  // 0: search
  if (absl::Status st = ParseHostOverhead(host_us, model_template); !st.ok()) {
    return Usage(absl::StrCat("--host-overhead-us: ", st.message()));
  }
  const double host_cpu_us = absl::GetFlag(FLAGS_host_cpu_us);
  const int host_cores = absl::GetFlag(FLAGS_host_cores);
  if (!(host_cpu_us >= 0) || !std::isfinite(host_cpu_us)) {
    return Usage("--host-cpu-us must be >= 0");
  }
  if (host_cores < 1) return Usage("--host-cores must be >= 1");
  model_template.host_cpu = absl::Microseconds(host_cpu_us);
  model_template.host_cores = host_cores;
  model_template.options.max_images_per_run = static_cast<uint32_t>(max_run);
  model_template.options.max_queue_images = static_cast<uint32_t>(max_queue);
  model_template.board_slots = slots;
  if (variant_mode) {
    PlanOptions options;
    options.max_boards = max_boards;
    options.simulation.duration = absl::Seconds(seconds);
    options.simulation.warmup = absl::Seconds(warmup);
    options.simulation.seed = absl::GetFlag(FLAGS_seed);
    options.simulation.scheduler.dispatch_lead = absl::Microseconds(lead_us);
    return VariantsMain(model_template, options, absl::GetFlag(FLAGS_json));
  }
  absl::StatusOr<std::vector<PlanTarget>> targets = ParseWorkloads(items, model_template);
  if (!targets.ok()) return Usage(std::string(targets.status().message()));

  PlanOptions options;
  options.max_boards = max_boards;
  options.simulation.duration = absl::Seconds(seconds);
  options.simulation.warmup = absl::Seconds(warmup);
  options.simulation.seed = absl::GetFlag(FLAGS_seed);
  options.simulation.scheduler.dispatch_lead = absl::Microseconds(lead_us);
  // A simulation has no faults: no board to recover or reprogram.
  options.simulation.scheduler.reprogram = false;

  const bool json = absl::GetFlag(FLAGS_json);
  if (!json) {
    std::printf(
        "hgpipe-plan: %.3g s simulated per candidate (%.3g s warmup), "
        "seed %llu, dispatch lead %d us, host overhead %s us\n",
        seconds, warmup, static_cast<unsigned long long>(options.simulation.seed), lead_us,
        host_us.c_str());
  }
  const absl::Time wall_start = absl::Now();
  std::vector<PlanAnswer> answers;
  bool all_met = true;
  for (const PlanTarget& t : *targets) {
    const bool searched = t.model.boards == 0;
    PlanAnswer answer;
    if (searched) {
      absl::StatusOr<PlanAnswer> a = PlanBoards(t, options);
      if (!a.ok()) {
        if (absl::IsInvalidArgument(a.status())) {
          return Usage(std::string(a.status().message()));
        }
        std::fprintf(stderr, "hgpipe-plan: %s\n", a.status().ToString().c_str());
        return 1;
      }
      answer = *std::move(a);
    } else {
      SimulationSpec spec = options.simulation;
      spec.models = {t.model};
      absl::StatusOr<SimulationResult> r = Simulate(spec);
      if (!r.ok()) {
        if (absl::IsInvalidArgument(r.status())) {
          return Usage(std::string(r.status().message()));
        }
        std::fprintf(stderr, "hgpipe-plan: %s\n", r.status().ToString().c_str());
        return 1;
      }
      answer.model = t.model.name;
      answer.lower_bound = t.model.boards;
      for (size_t i = 0; i < t.model.streams.size(); ++i) {
        answer.min_latency = std::max(answer.min_latency, MinLatency(t.model, t.model.streams[i]));
      }
      PlanStep step;
      step.boards = t.model.boards;
      step.result = std::move(r->models[0]);
      step.meets = MeetsObjectives(t, step.result, &step.why_not);
      if (step.meets) answer.boards = step.boards;
      answer.tried.push_back(std::move(step));
    }
    if (answer.boards == 0) all_met = false;
    if (!json) PrintModel(t, answer, searched);
    answers.push_back(std::move(answer));
  }
  const double wall_s = absl::ToDoubleSeconds(absl::Now() - wall_start);
  if (json) {
    std::string out = absl::StrFormat(
        "{\"seconds\":%.6f,\"warmup_seconds\":%.6f,\"seed\":%d,"
        "\"dispatch_lead_us\":%d,\"host_overhead_us\":\"%s\","
        "\"wall_seconds\":%.3f,\"all_met\":%s,\"models\":[",
        seconds, warmup, options.simulation.seed, lead_us, host_us, wall_s,
        all_met ? "true" : "false");
    for (size_t i = 0; i < answers.size(); ++i) {
      if (i) out += ",";
      out += PlanAnswerToJson(answers[i]);
    }
    out += "]}";
    std::printf("%s\n", out.c_str());
  } else {
    std::printf("(%.2f s of wall time)\n", wall_s);
  }
  return all_met ? 0 : 3;
}

}  // namespace
}  // namespace hgpipe::plan

int main(int argc, char** argv) { return hgpipe::plan::Main(argc, argv); }
