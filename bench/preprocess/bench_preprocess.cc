// Host preprocessing cost per image, one core (Google Benchmark; every
// benchmark is single-threaded). items_per_second is images/s per core.
//
//   DeiT-tiny: a photo-sized JPEG (500x375, TurboJPEG quality 90, 4:2:0, a
//   textured photo-like image) -> decode, shorter side 256 (bicubic), center
//   crop 224, ImageNet normalization, int8, 196 x 768 patches (150,528 bytes).
//   fmnist_vit: a 28x28 gray PNG -> 28 tokens x 28 values (784 bytes).
//
// HG-PIPE consumes 7,118 images/s per board (the authors' paper), so the
// DeiT-tiny figure says how many cores one board needs for JPEG input.
//
//   BM_WorkerPool*/threads:N: the server's WorkerPool (server/worker_pool.h)
//   with N threads preprocessing a stream of 500x375 JPEGs into their own
//   slots, as the server does: images/s of wall time for the pool, and the
//   process's CPU per image (cpu_us_per_image).
//   HGPIPE_BENCH_JPEGS=a.jpg:b.jpg adds BM_File/<name> for each file (e.g.
//   real photos) to DeiT-tiny's input in device order (as the server writes
//   it into a board's slot), BM_FileScalarPath/<name> (the same
//   through the scalar reference path: full decode, resample, table) and
//   BM_FileDecodeOnly/<name> (a full decode alone).
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "benchmark/benchmark.h"
#include "preprocess/image_decoder.h"
#include "preprocess/image_encoder.h"
#include "preprocess/preprocessor.h"
#include "server/worker_pool.h"

namespace hgpipe::preprocess {
namespace {

// Smooth gradients, edges and seeded noise: compresses about like a photo
// (tens of KB at quality 90 for 500x375), unlike a flat synthetic image.
std::vector<uint8_t> PhotoLike(int width, int height) {
  std::mt19937 rng(1);
  std::normal_distribution<double> noise(0.0, 14.0);
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double u = static_cast<double>(x) / width, v = static_cast<double>(y) / height;
      const double edge = ((x / 37 + y / 29) % 2) * 40.0;
      const double base[3] = {120 + 80 * std::sin(6 * u + 2 * v) + edge,
                              110 + 70 * std::cos(5 * v - 3 * u), 90 + 100 * u * v + edge / 2};
      for (int c = 0; c < 3; ++c) {
        const double value = base[c] + noise(rng);
        rgb[(static_cast<size_t>(y) * width + x) * 3 + c] =
            static_cast<uint8_t>(std::fmin(255.0, std::fmax(0.0, std::round(value))));
      }
    }
  }
  return rgb;
}

std::vector<uint8_t> PhotoJpeg(int width, int height) {
  JpegSpec spec;
  spec.width = width;
  spec.height = height;
  spec.quality = 90;
  spec.subsampling = 420;
  return *EncodeJpeg(PhotoLike(width, height), spec);
}

Options FashionMnist() {
  Options o;
  o.tokens = 28;
  o.token_values = 28;
  o.cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  o.height = o.width = 28;
  o.channels = 1;
  o.patch_height = 4;
  o.patch_width = 7;
  o.resize = ResizeMode::kExact;
  o.mean = {128.0f / 255.0f, 0, 0};
  o.stddev = {128.0f / 255.0f, 1, 1};
  o.quant_scale = 1.0f / 128.0f;
  return o;
}

void RunEncoded(benchmark::State& state, const Options& options,
                const std::vector<uint8_t>& encoded) {
  const Preprocessor p = *Preprocessor::Create(options);
  std::vector<int8_t> out(p.input_bytes());
  for (auto _ : state) {
    const absl::Status s = p.EncodedToPatches(encoded, absl::MakeSpan(out));
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["encoded_bytes"] = static_cast<double>(encoded.size());
}

void BM_DeitTinyJpeg500x375(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(500, 375);
  RunEncoded(state, DeitTinyOptions(), jpeg);
}
BENCHMARK(BM_DeitTinyJpeg500x375);

void BM_DeitTinyJpeg500x375FullDecode(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(500, 375);
  Options o = DeitTinyOptions();
  o.jpeg_scaled_decode = false;
  RunEncoded(state, o, jpeg);
}
BENCHMARK(BM_DeitTinyJpeg500x375FullDecode);

// The scalar reference path (full decode, resample to an image, patchify
// through the table): what the fused pass and region decode replace.
void BM_DeitTinyJpeg500x375ScalarPath(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(500, 375);
  Options o = DeitTinyOptions();
  o.fused_pass = false;
  RunEncoded(state, o, jpeg);
}
BENCHMARK(BM_DeitTinyJpeg500x375ScalarPath);

void BM_DeitTinyJpeg500x375DevicePacked(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(500, 375);
  Options o = DeitTinyOptions();
  o.output_layout = OutputLayout::kDevicePacked;
  RunEncoded(state, o, jpeg);
}
BENCHMARK(BM_DeitTinyJpeg500x375DevicePacked);

void BM_DeitTinyJpeg500x375Bilinear(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(500, 375);
  Options o = DeitTinyOptions();
  o.filter = ResizeFilter::kBilinear;
  RunEncoded(state, o, jpeg);
}
BENCHMARK(BM_DeitTinyJpeg500x375Bilinear);

void BM_DeitTinyJpeg1920x1080(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(1920, 1080);
  RunEncoded(state, DeitTinyOptions(), jpeg);
}
BENCHMARK(BM_DeitTinyJpeg1920x1080);

// The decode alone (full size), to split the DeiT-tiny cost.
void BM_JpegDecodeOnly500x375(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(500, 375);
  ScratchBuffer buffer;
  for (auto _ : state) {
    auto image = DecodeImage(jpeg, DecodeOptions(), &buffer);
    if (!image.ok()) state.SkipWithError(image.status().ToString().c_str());
    benchmark::DoNotOptimize(buffer.capacity());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_JpegDecodeOnly500x375);

// Raw UINT8 pixels (no decode): resize + crop + normalize + patchify.
void BM_DeitTinyRawPixels500x375(benchmark::State& state) {
  static const std::vector<uint8_t> rgb = PhotoLike(500, 375);
  const Preprocessor p = *Preprocessor::Create(DeitTinyOptions());
  std::vector<int8_t> out(p.input_bytes());
  for (auto _ : state) {
    const absl::Status s = p.PixelsToPatches(rgb, 375, 500, 3, absl::MakeSpan(out));
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DeitTinyRawPixels500x375);

// Already 224x224: normalize + patchify only.
void BM_DeitTinyRawPixels224x224(benchmark::State& state) {
  static const std::vector<uint8_t> rgb = PhotoLike(224, 224);
  Options o = DeitTinyOptions();
  o.resize = ResizeMode::kExact;
  const Preprocessor p = *Preprocessor::Create(o);
  std::vector<int8_t> out(p.input_bytes());
  for (auto _ : state) {
    const absl::Status s = p.PixelsToPatches(rgb, 224, 224, 3, absl::MakeSpan(out));
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DeitTinyRawPixels224x224);

void BM_FashionMnistPng28x28(benchmark::State& state) {
  static const std::vector<uint8_t> png = [] {
    std::vector<uint8_t> gray(28 * 28);
    const std::vector<uint8_t> rgb = PhotoLike(28, 28);
    for (size_t i = 0; i < gray.size(); ++i) gray[i] = rgb[3 * i];
    PngSpec spec;
    spec.width = spec.height = 28;
    spec.color_type = 0;
    return *EncodePng(gray, spec);
  }();
  RunEncoded(state, FashionMnist(), png);
}
BENCHMARK(BM_FashionMnistPng28x28);

// The server's pool: `threads` workers, images queued in batches of 64
// (requests), each written into its own 150,528-byte slot.
void BM_WorkerPoolDeitTinyJpeg500x375(benchmark::State& state) {
  static const std::vector<uint8_t> jpeg = PhotoJpeg(500, 375);
  const int threads = static_cast<int>(state.range(0));
  const Preprocessor p = *Preprocessor::Create(DeitTinyOptions());
  constexpr int kBatch = 64;
  std::vector<int8_t> slots(kBatch * p.input_bytes());
  server::WorkerPool pool(threads, 1 << 16);
  std::atomic<int> failures{0};
  timespec cpu0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
  for (auto _ : state) {
    std::atomic<int> left{kBatch};
    absl::Notification done;
    std::vector<server::WorkerPool::Task> tasks;
    for (int i = 0; i < kBatch; ++i) {
      tasks.push_back([&, i] {
        const absl::Span<int8_t> out(slots.data() + i * p.input_bytes(), p.input_bytes());
        if (!p.EncodedToPatches(jpeg, out).ok()) failures.fetch_add(1);
        if (left.fetch_sub(1) == 1) done.Notify();
      });
    }
    if (!pool.TrySubmitAll(std::move(tasks))) state.SkipWithError("queue full");
    done.WaitForNotification();
  }
  timespec cpu1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
  if (failures.load() != 0) state.SkipWithError("preprocessing failed");
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["threads"] = threads;
  // The pool's CPU per image (all threads): flat from 1 to 2 threads when
  // nothing is shared; images/s itself scales only with idle cores.
  const double cpu = (cpu1.tv_sec - cpu0.tv_sec) + (cpu1.tv_nsec - cpu0.tv_nsec) * 1e-9;
  state.counters["cpu_us_per_image"] = cpu / (state.iterations() * kBatch) * 1e6;
}
BENCHMARK(BM_WorkerPoolDeitTinyJpeg500x375)->Arg(1)->Arg(2)->UseRealTime()->ArgName("threads");

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// BM_File/<name> and BM_FileDecodeOnly/<name> for HGPIPE_BENCH_JPEGS.
void RegisterFileBenchmarks() {
  const char* list = std::getenv("HGPIPE_BENCH_JPEGS");
  if (list == nullptr) return;
  for (absl::string_view path : absl::StrSplit(list, ':', absl::SkipEmpty())) {
    const std::string name(path.substr(path.rfind('/') + 1));
    const auto bytes = std::make_shared<std::vector<uint8_t>>(ReadFile(std::string(path)));
    benchmark::RegisterBenchmark(("BM_File/" + name).c_str(), [bytes](benchmark::State& state) {
      Options o = DeitTinyOptions();
      o.output_layout = OutputLayout::kDevicePacked;  // as the server asks
      RunEncoded(state, o, *bytes);
    });
    benchmark::RegisterBenchmark(("BM_FileScalarPath/" + name).c_str(),
                                 [bytes](benchmark::State& state) {
                                   Options o = DeitTinyOptions();
                                   o.fused_pass = false;
                                   RunEncoded(state, o, *bytes);
                                 });
    benchmark::RegisterBenchmark(("BM_FileDecodeOnly/" + name).c_str(),
                                 [bytes](benchmark::State& state) {
                                   ScratchBuffer buffer;
                                   for (auto _ : state) {
                                     auto image = DecodeImage(*bytes, DecodeOptions(), &buffer);
                                     if (!image.ok()) {
                                       state.SkipWithError(image.status().ToString().c_str());
                                     }
                                   }
                                   state.SetItemsProcessed(state.iterations());
                                 });
  }
}

}  // namespace
}  // namespace hgpipe::preprocess

int main(int argc, char** argv) {
  hgpipe::preprocess::RegisterFileBenchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
