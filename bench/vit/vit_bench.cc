// Images/s of HG-PIPE's integer ViT datapath (accel/vit/) on this CPU: the
// software function of the bitstream, without the board's timing model.
// run_bench.sh compares it with PyTorch fp32 DeiT-tiny in the same run.
//
//   vit_bench --images=64 --workers=2     (models/deit_tiny: the authors' DeiT-tiny)
//   vit_bench --model=models/fmnist_vit/fmnist_vit.hgvit
//   vit_bench --golden=models/deit_tiny/golden.hgvit
//   HGPIPE_VIT_BLOCKS=stages vit_bench    (the stage-by-stage path; and
//   HGPIPE_VIT_SIMD=baseline for the portable code: vit_kernel.h)
#include <chrono>
#include <ctime>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "base/flags.h"
#include "accel/vit/vit_kernel.h"
#include "accel/vit/weight_file.h"

ABSL_FLAG(std::string, model, HGPIPE_DEFAULT_DEIT_TINY,
          "weight file (default: the bundled DeiT-tiny)");
ABSL_FLAG(int, images, 64, "images to time (after one warm-up run)");
ABSL_FLAG(int, batch, 16, "images per Compute call");
ABSL_FLAG(int, threads, 1, "OpenMP threads per Compute call (VitKernel::Options::threads)");
ABSL_FLAG(int, workers, 2,
          "host threads calling Compute at once, as boards do; each computes "
          "its share of the images");
ABSL_FLAG(int, repeats, 3, "timed repetitions; the best is reported");
ABSL_FLAG(int, chunk_images, 0,
          "images computed together (VitKernel::Options::chunk_images; 0: default)");
ABSL_FLAG(std::string, golden, "",
          "check the model against this golden-vector file "
          "(tools/vit/golden.py) and exit: 0 if bit-exact");

namespace {

using hgpipe::accel::vit::VitKernel;

int CheckGolden(const VitKernel& k, const std::string& path) {
  absl::StatusOr<hgpipe::accel::vit::Container> c = hgpipe::accel::vit::ReadContainer(path);
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    return 1;
  }
  const auto& in = c->tensors.at("input");
  const std::vector<int64_t> want = c->tensors.at("output").ToInt64();
  const auto& g = k.manifest().geometry;
  const uint32_t n = in.dims.at(0);
  if (in.bytes.size() != n * g.input_bytes() || want.size() != n * g.output_words()) {
    std::fprintf(stderr, "%s: shapes do not match the model\n", path.c_str());
    return 1;
  }
  std::vector<uint32_t> got(want.size());
  k.Compute(reinterpret_cast<const int8_t*>(in.bytes.data()), n, got.data());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != uint32_t(want[i]);
  std::printf("%s: %u images, %zu of %zu words differ\n", path.c_str(), n, bad, got.size());
  return bad == 0 ? 0 : 2;
}

int Main() {
  hgpipe::accel::vit::VitKernel::Options kernel_options;
  kernel_options.threads = absl::GetFlag(FLAGS_threads);
  kernel_options.chunk_images = absl::GetFlag(FLAGS_chunk_images);
  const std::string model = absl::GetFlag(FLAGS_model);
  absl::StatusOr<std::shared_ptr<const VitKernel>> kernel =
      hgpipe::accel::vit::LoadVitKernel(model, kernel_options);
  if (!kernel.ok()) {
    std::fprintf(stderr, "%s\n", kernel.status().ToString().c_str());
    return 1;
  }
  const VitKernel& k = **kernel;
  const auto& g = k.manifest().geometry;
  if (const std::string path = absl::GetFlag(FLAGS_golden); !path.empty()) {
    return CheckGolden(k, path);
  }
  const int n = absl::GetFlag(FLAGS_images);
  const int batch = std::max(1, absl::GetFlag(FLAGS_batch));
  std::vector<int8_t> input(size_t(n) * g.input_bytes());
  uint32_t x = 1;
  for (int8_t& v : input) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<int8_t>(x >> 24);
  }
  std::vector<uint32_t> output(size_t(n) * g.output_words());
  const int workers = std::max(1, absl::GetFlag(FLAGS_workers));
  // Worker w computes batches w, w + workers, ...
  auto work = [&](int w) {
    for (int i = w * batch; i < n; i += workers * batch) {
      const int b = std::min(batch, n - i);
      k.Compute(input.data() + size_t(i) * g.input_bytes(), b,
                output.data() + size_t(i) * g.output_words());
    }
  };
  auto run = [&] {
    std::vector<std::thread> threads;
    for (int w = 1; w < workers; ++w) threads.emplace_back(work, w);
    work(0);
    for (std::thread& t : threads) t.join();
  };
  run();  // warm-up: primitive creation, page faults
  // CPU time as well as wall time: on a shared machine the wall clock counts
  // time the process waited for a core.
  auto cpu_seconds = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  };
  double best = 1e300, best_cpu = 1e300;
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    run();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = std::min(best, dt.count());
    best_cpu = std::min(best_cpu, cpu_seconds() - c0);
  }
  std::printf(
      "model=%s workers=%d threads=%d batch=%d images=%d "
      "lut_blocks=%u/%u simd=%s: %.1f images/s (%.2f ms/image), "
      "%.1f images/cpu-s\n",
      k.manifest().name.c_str(), workers, absl::GetFlag(FLAGS_threads), batch, n, k.lut_blocks(),
      2 * k.spec().depth, hgpipe::accel::vit::BestSimdTarget(), n / best, 1e3 * best / n,
      n / best_cpu);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Images/s of the integer ViT datapath (see docs/datapath.md).\n"
      "  vit_bench [--flags below]");
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  absl::ParseCommandLine(argc, argv);
  return Main();
}
