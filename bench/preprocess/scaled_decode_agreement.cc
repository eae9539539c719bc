// What JPEG DCT-scaled decoding (Options::jpeg_scaled_decode) does to
// results: the same JPEGs classified through the scaled decode and through
// the full-size decode + resize, by the emulated boards' own kernels; prints
// top-1 agreement, accuracy where labels exist, and how many int8 input
// values differ.
//
//   hgpipe-scaled-decode-agreement fmnist [N]
//     Fashion-MNIST's test set (Debian's dataset-fashion-mnist), each 28x28
//     image enlarged 8x (nearest) to 224x224 and stored as a gray JPEG q90;
//     fmnist_vit (models/fmnist_vit) resizes it back to 28x28 (exact,
//     bilinear): the scaled decode reads it at 1/8, straight at 28x28.
//   hgpipe-scaled-decode-agreement deit_tiny FILE.jpg...
//     photos through deit_tiny's transform (shorter side 256, crop 224) on
//     models/deit_tiny's weights (HGPIPE_DEIT_WEIGHTS to override), with a
//     control: the full path with bilinear instead of bicubic resizing.
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "accel/device_layout.h"
#include "accel/kernel.h"
#include "accel/vit/vit_kernel.h"
#include "preprocess/image_encoder.h"
#include "preprocess/preprocessor.h"

namespace hgpipe::preprocess {
namespace {

std::vector<uint8_t> Gunzip(const std::string& path) {
  std::vector<uint8_t> out;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.insert(out.end(), buf, buf + n);
  gzclose(f);
  return out;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

int Argmax(const uint32_t* words, int classes) {
  int best = 0;
  for (int c = 1; c < classes; ++c) {
    if (accel::DecodeLogitWord(words[c]) > accel::DecodeLogitWord(words[best])) best = c;
  }
  return best;
}

struct Tally {
  int images = 0, agree = 0, correct_scaled = 0, correct_full = 0;
  int64_t values = 0, values_differ = 0, sum_abs = 0;
};

// Classifies `encoded` both ways; label < 0: none.
void Compare(const accel::Kernel& kernel, const Preprocessor& scaled, const Preprocessor& full,
             const std::vector<uint8_t>& encoded, int label, Tally* t) {
  const size_t bytes = scaled.input_bytes();
  std::vector<int8_t> a(bytes), b(bytes);
  if (!scaled.EncodedToPatches(encoded, absl::MakeSpan(a)).ok() ||
      !full.EncodedToPatches(encoded, absl::MakeSpan(b)).ok()) {
    std::fprintf(stderr, "preprocessing failed\n");
    std::exit(1);
  }
  const int classes = static_cast<int>(kernel.manifest().geometry.classes);
  std::vector<uint32_t> out(2 * classes);
  std::vector<int8_t> both(a);
  both.insert(both.end(), b.begin(), b.end());
  kernel.Compute(both.data(), 2, out.data());
  const int ca = Argmax(out.data(), classes), cb = Argmax(out.data() + classes, classes);
  ++t->images;
  t->agree += ca == cb;
  t->correct_scaled += ca == label;
  t->correct_full += cb == label;
  for (size_t i = 0; i < bytes; ++i) {
    t->values_differ += a[i] != b[i];
    t->sum_abs += std::abs(a[i] - b[i]);
  }
  t->values += static_cast<int64_t>(bytes);
}

void Print(const char* what, const Tally& t, bool labels) {
  std::printf("%s: %d images, top-1 agreement %.2f %% (%d differ)", what, t.images,
              100.0 * t.agree / t.images, t.images - t.agree);
  if (labels) {
    std::printf(", accuracy scaled %.2f %% full %.2f %%", 100.0 * t.correct_scaled / t.images,
                100.0 * t.correct_full / t.images);
  }
  std::printf(", int8 inputs differing %.2f %%, mean |difference| %.3f\n",
              100.0 * t.values_differ / t.values, static_cast<double>(t.sum_abs) / t.values);
}

int Fmnist(int limit) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  const std::vector<uint8_t> images = Gunzip(dir + "t10k-images-idx3-ubyte.gz");
  const std::vector<uint8_t> labels = Gunzip(dir + "t10k-labels-idx1-ubyte.gz");
  if (images.size() != 16 + 10000 * 784 || labels.size() != 8 + 10000) {
    std::fprintf(stderr, "need Debian's dataset-fashion-mnist in %s\n", dir.c_str());
    return 1;
  }
  const char* src = std::getenv("HGPIPE_SOURCE_DIR");
  const std::string weights =
      std::string(src != nullptr ? src : ".") + "/models/fmnist_vit/fmnist_vit.hgvit";
  auto kernel = accel::vit::LoadVitKernel(weights);
  if (!kernel.ok()) {
    std::fprintf(stderr, "%s\n", kernel.status().ToString().c_str());
    return 1;
  }
  Options o;  // models/fmnist_vit/config.pbtxt, resizing to 28x28
  o.tokens = o.token_values = 28;
  o.height = o.width = 28;
  o.channels = 1;
  o.patch_height = 4;
  o.patch_width = 7;
  o.resize = ResizeMode::kExact;
  o.filter = ResizeFilter::kBilinear;
  o.mean = {128.0f / 255.0f, 0, 0};
  o.stddev = {128.0f / 255.0f, 1, 1};
  o.quant_scale = 1.0f / 128.0f;
  o.output_layout = OutputLayout::kDevicePacked;
  const Preprocessor scaled = *Preprocessor::Create(o);
  o.jpeg_scaled_decode = false;
  const Preprocessor full = *Preprocessor::Create(o);
  // The reference: the original 28x28 pixels, no JPEG.
  Options direct = o;
  direct.resize = ResizeMode::kNone;
  const Preprocessor original = *Preprocessor::Create(direct);
  int correct_original = 0;
  Tally t;
  for (int i = 0; i < limit && i < 10000; ++i) {
    {
      std::vector<int8_t> in(original.input_bytes());
      std::vector<uint32_t> out((*kernel)->manifest().geometry.classes);
      if (!original.PixelsToPatches(&images[16 + i * 784], 28, 28, 1, absl::MakeSpan(in)).ok()) {
        return 1;
      }
      (*kernel)->Compute(in.data(), 1, out.data());
      correct_original += Argmax(out.data(), static_cast<int>(out.size())) == labels[8 + i];
    }
    std::vector<uint8_t> big(224 * 224);
    for (int y = 0; y < 224; ++y) {
      for (int x = 0; x < 224; ++x) big[y * 224 + x] = images[16 + i * 784 + (y / 8) * 28 + x / 8];
    }
    JpegSpec spec;
    spec.width = spec.height = 224;
    spec.channels = 1;
    spec.quality = 90;
    Compare(**kernel, scaled, full, *EncodeJpeg(big, spec), labels[8 + i], &t);
  }
  Print("fmnist_vit, 224x224 gray JPEG q90 -> 28x28", t, true);
  std::printf("fmnist_vit on the original 28x28 pixels (no JPEG): accuracy %.2f %%\n",
              100.0 * correct_original / t.images);
  return 0;
}

int DeitTiny(int argc, char** argv) {
  // models/deit_tiny's weights (the HG-PIPE authors' DeiT-tiny), or
  // HGPIPE_DEIT_WEIGHTS.
  const char* src = std::getenv("HGPIPE_SOURCE_DIR");
  const char* env = std::getenv("HGPIPE_DEIT_WEIGHTS");
  const std::string weights = env != nullptr ? env
                                             : std::string(src != nullptr ? src : ".") +
                                                   "/models/deit_tiny/deit_tiny.hgvit";
  auto kernel = accel::vit::LoadVitKernel(weights);
  if (!kernel.ok()) {
    std::fprintf(stderr, "%s\n", kernel.status().ToString().c_str());
    return 1;
  }
  Options o = DeitTinyOptions();
  o.output_layout = OutputLayout::kDevicePacked;
  const Preprocessor scaled = *Preprocessor::Create(o);
  o.jpeg_scaled_decode = false;
  const Preprocessor full = *Preprocessor::Create(o);
  // A control for the network's own sensitivity: the full-size path with
  // the bilinear filter instead of bicubic.
  o.filter = ResizeFilter::kBilinear;
  const Preprocessor bilinear = *Preprocessor::Create(o);
  Tally t, control;
  for (int i = 0; i < argc; ++i) {
    const std::vector<uint8_t> jpeg = ReadFile(argv[i]);
    Compare(**kernel, scaled, full, jpeg, -1, &t);
    Compare(**kernel, bilinear, full, jpeg, -1, &control);
  }
  const char* net = weights.c_str();
  std::printf("deit_tiny (%s), photos, ", net);
  Print("scaled vs full decode", t, false);
  std::printf("deit_tiny (%s), photos, ", net);
  Print("control: bilinear vs bicubic, full decode", control, false);
  return 0;
}

}  // namespace
}  // namespace hgpipe::preprocess

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "fmnist") {
    return hgpipe::preprocess::Fmnist(argc > 2 ? std::atoi(argv[2]) : 10000);
  }
  if (mode == "deit_tiny" && argc > 2) return hgpipe::preprocess::DeitTiny(argc - 2, argv + 2);
  const bool help = mode == "--help" || mode == "-h";
  std::fprintf(help ? stdout : stderr,
               "usage: hgpipe-scaled-decode-agreement fmnist [N] | deit_tiny FILE.jpg...\n"
               "top-1 agreement of DCT-scaled and full-size JPEG decoding\n");
  return help ? 0 : 2;
}
