// hgpipe-bench-board: how fast the emulated board runs on this machine, at
// saturation. Every slot is kept submitted back to back (each completion
// resubmits its slot at once) on the wall clock (RealClock), and the images
// completed over a few seconds are compared with the board's 1/II ceiling
// (PipelineTiming::max_images_per_second(), 7,375/s for HG-PIPE DeiT-tiny).
//
// Two kernels: "verify" (the software kernel hgpipe-server's emulated boards
// run: device unpacking and a digest, so host CPU can slow the board) and
// "noop" (no computation: the timing model and its timers alone).
//
//   hgpipe-bench-board [--images-per-run 1,16,64] [--slots 4] [--duration 3]
//                      [--kernels verify,noop] [--json]
//
// "model_images_per_second" is what the timing model allows with that many
// images in flight: runs of n images on s slots keep at most s*n images in
// the pipeline, so fewer than about 15 (latency / II) cannot fill it.
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "accel/emulated_board.h"
#include "accel/kernel.h"
#include "base/clock.h"
#include "base/flags.h"
#include "base/mutex.h"

ABSL_FLAG(std::string, images_per_run, "1,16,64", "Comma-separated run sizes to measure.");
ABSL_FLAG(int, slots, 4, "Board run slots (EmulatedBoard::Options::num_slots).");
ABSL_FLAG(double, duration, 3, "Measured seconds per case.");
ABSL_FLAG(double, warmup, 0.5, "Seconds per case before measuring.");
ABSL_FLAG(std::string, kernels, "verify,noop", "Kernels to measure: verify, noop.");
ABSL_FLAG(bool, json, false, "Print one JSON object.");

namespace hgpipe::bench {
namespace {

// The verify bitstream's manifest with no computation: isolates the timing
// model (timers, completion callbacks) from the kernel's host CPU cost.
class NoopKernel final : public accel::Kernel {
 public:
  explicit NoopKernel(accel::BitstreamManifest manifest) : manifest_(std::move(manifest)) {}
  const accel::BitstreamManifest& manifest() const override { return manifest_; }
  void Compute(const int8_t*, uint32_t, uint32_t*) const override {}

 private:
  accel::BitstreamManifest manifest_;
};

struct CaseResult {
  std::string kernel;
  uint32_t images_per_run = 0;
  int slots = 0;
  double seconds = 0;
  int64_t images = 0;
  double images_per_second = 0;
  double ceiling_images_per_second = 0;  // 1 / II
  double model_images_per_second = 0;    // the timing model, images in flight
  double cpu_cores = 0;
};

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec * 1e-6;
}

// Keeps every slot of one board busy and counts completed images.
class Saturator {
 public:
  Saturator(accel::Board* board, uint32_t n) : board_(board), n_(n) {}

  void Start() {
    for (int s = 0; s < board_->num_slots(); ++s) {
      {
        hgpipe::MutexLock l(&mu_);
        ++active_;
      }
      Submit(s);
    }
  }
  int64_t images() {
    hgpipe::MutexLock l(&mu_);
    return images_;
  }
  // Stops resubmitting and waits for the runs in flight.
  absl::Status StopAndWait() {
    hgpipe::MutexLock l(&mu_);
    stop_ = true;
    mu_.Await(absl::Condition(
        +[](Saturator* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->active_ == 0; }, this));
    return first_error_;
  }

 private:
  void Submit(int slot) {
    board_->Submit(slot, n_, [this, slot](absl::Status status) {
      bool again;
      {
        hgpipe::MutexLock l(&mu_);
        if (status.ok()) {
          images_ += n_;
        } else if (first_error_.ok()) {
          first_error_ = status;
        }
        again = !stop_ && status.ok();
        if (!again) --active_;
      }
      // Resubmitting from inside the callback: Submit never blocks, and
      // nothing here reads the slot's output, so the run that just ended
      // needs nothing more from it.
      if (again) Submit(slot);
    });
  }

  accel::Board* const board_;
  const uint32_t n_;
  hgpipe::Mutex mu_;
  int64_t images_ ABSL_GUARDED_BY(mu_) = 0;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
};

// The timing model's steady rate for s slots of n-image runs submitted back
// to back: each slot cycles through (n-1)*T + L + overhead, and the input
// stream is busy n*T per run.
double ModelRate(const accel::PipelineTiming& t, uint32_t n, int slots) {
  const double ii = absl::ToDoubleSeconds(t.interval());
  const double cycle =
      (n - 1) * ii + absl::ToDoubleSeconds(t.latency()) + absl::ToDoubleSeconds(t.run_overhead);
  return std::min(t.max_images_per_second(), slots * n / cycle);
}

absl::StatusOr<CaseResult> RunCase(std::shared_ptr<const accel::Kernel> kernel,
                                   const std::string& kernel_name, uint32_t n, int slots) {
  RealClock clock;  // declared first: outlives the board
  accel::EmulatedBoard::Options options;
  options.name = "bench0";
  options.kernel = std::move(kernel);
  options.clock = &clock;
  options.num_slots = slots;
  options.max_images_per_run = n;
  absl::StatusOr<std::unique_ptr<accel::EmulatedBoard>> board =
      accel::EmulatedBoard::Create(options);
  if (!board.ok()) return board.status();
  // Distinct, non-zero inputs, as a server would write them.
  for (int s = 0; s < (*board)->num_slots(); ++s) {
    absl::Span<int8_t> in = (*board)->slot(s).input;
    for (size_t i = 0; i < in.size(); ++i) {
      in[i] = static_cast<int8_t>((i * 131 + s * 7) >> 3);
    }
  }
  Saturator saturator(board->get(), n);
  saturator.Start();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_warmup)));
  const int64_t images0 = saturator.images();
  const absl::Time t0 = absl::Now();
  const double cpu0 = CpuSeconds();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_duration)));
  const int64_t images1 = saturator.images();
  const absl::Time t1 = absl::Now();
  const double cpu1 = CpuSeconds();
  if (absl::Status s = saturator.StopAndWait(); !s.ok()) return s;

  CaseResult r;
  r.kernel = kernel_name;
  r.images_per_run = n;
  r.slots = slots;
  r.seconds = absl::ToDoubleSeconds(t1 - t0);
  r.images = images1 - images0;
  r.images_per_second = r.images / r.seconds;
  const accel::PipelineTiming& timing = (*board)->manifest().timing;
  r.ceiling_images_per_second = timing.max_images_per_second();
  r.model_images_per_second = ModelRate(timing, n, slots);
  r.cpu_cores = (cpu1 - cpu0) / r.seconds;
  return r;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "measures the emulated HG-PIPE board at saturation.\n"
      "  hgpipe-bench-board [--images-per-run 1,16,64] [--slots 4] "
      "[--duration 3] [--kernels verify,noop] [--json]");
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);

  std::vector<uint32_t> sizes;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_images_per_run), ',', absl::SkipEmpty())) {
    uint32_t n = 0;
    if (!absl::SimpleAtoi(part, &n) || n == 0) {
      std::fprintf(stderr, "hgpipe-bench-board: bad --images-per-run '%s'\n",
                   std::string(part).c_str());
      return 2;
    }
    sizes.push_back(n);
  }
  const std::shared_ptr<const accel::Kernel> verify = accel::VerifyKernel();
  std::vector<CaseResult> results;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_kernels), ',', absl::SkipEmpty())) {
    std::shared_ptr<const accel::Kernel> kernel;
    if (name == "verify") {
      kernel = verify;
    } else if (name == "noop") {
      kernel = std::make_shared<NoopKernel>(verify->manifest());
    } else {
      std::fprintf(stderr, "hgpipe-bench-board: unknown kernel '%s'\n", std::string(name).c_str());
      return 2;
    }
    for (uint32_t n : sizes) {
      absl::StatusOr<CaseResult> r =
          RunCase(kernel, std::string(name), n, absl::GetFlag(FLAGS_slots));
      if (!r.ok()) {
        std::fprintf(stderr, "hgpipe-bench-board: %s\n", std::string(r.status().message()).c_str());
        return 1;
      }
      if (!absl::GetFlag(FLAGS_json)) {
        std::printf(
            "kernel %-6s slots %d x %3u images: %8.1f images/s = %5.1f%% of "
            "ceiling %.1f (timing model allows %.1f), %.2f cores\n",
            r->kernel.c_str(), r->slots, r->images_per_run, r->images_per_second,
            100 * r->images_per_second / r->ceiling_images_per_second, r->ceiling_images_per_second,
            r->model_images_per_second, r->cpu_cores);
        std::fflush(stdout);
      }
      results.push_back(*r);
    }
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::vector<std::string> items;
    for (const CaseResult& r : results) {
      items.push_back(absl::StrFormat(
          "{\"kernel\": \"%s\", \"slots\": %d, \"images_per_run\": %u, "
          "\"seconds\": %.3f, \"images\": %d, \"images_per_second\": %.1f, "
          "\"ceiling_images_per_second\": %.1f, "
          "\"model_images_per_second\": %.1f, \"ratio_to_ceiling\": %.4f, "
          "\"cpu_cores\": %.3f}",
          r.kernel, r.slots, r.images_per_run, r.seconds, r.images, r.images_per_second,
          r.ceiling_images_per_second, r.model_images_per_second,
          r.images_per_second / r.ceiling_images_per_second, r.cpu_cores));
    }
    std::printf("{\"results\": [%s]}\n", absl::StrJoin(items, ", ").c_str());
  }
  return 0;
}

}  // namespace
}  // namespace hgpipe::bench

int main(int argc, char** argv) { return hgpipe::bench::Main(argc, argv); }
