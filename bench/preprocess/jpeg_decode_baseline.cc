// The ceiling the server's cost per photo is judged against: one plain
// full-size libjpeg-turbo decode (TurboJPEG tjDecompress2 to RGB, default
// flags, as an application decoding a file would), CPU time per decode on
// one thread. bench/preprocess/server_cpu_per_image.sh runs it beside the
// server on the same files.
//
//   hgpipe-jpeg-decode-baseline FILE [SECONDS]
// prints: FILE WIDTHxHEIGHT us_per_decode us_per_decode_at_1/8
// The second figure, a decode at 1/8 scale (inverse DCTs of the DC terms
// only), is about the entropy decoding alone: the floor under any server
// that decodes the file with libjpeg-turbo.
#include <turbojpeg.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <vector>

namespace {

double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const bool help =
      argc > 1 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0);
  if (argc < 2 || help) {
    std::fprintf(help ? stdout : stderr,
                 "usage: hgpipe-jpeg-decode-baseline FILE [SECONDS]\n"
                 "CPU microseconds per full-size and 1/8-scale libjpeg-turbo decode of FILE\n");
    return help ? 0 : 2;
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 3.0;
  std::ifstream in(argv[1], std::ios::binary);
  const std::vector<unsigned char> jpeg((std::istreambuf_iterator<char>(in)), {});
  tjhandle tj = tjInitDecompress();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (jpeg.empty() || tj == nullptr ||
      tjDecompressHeader3(tj, jpeg.data(), jpeg.size(), &width, &height, &subsampling,
                          &colorspace) != 0) {
    std::fprintf(stderr, "%s: not a JPEG\n", argv[1]);
    return 1;
  }
  std::vector<unsigned char> rgb(static_cast<size_t>(width) * height * 3);
  // CPU microseconds per decode at scale 1/denom.
  auto measure = [&](int denom) {
    const tjscalingfactor f{1, denom};
    const int w = TJSCALED(width, f), h = TJSCALED(height, f);
    auto decode = [&] {
      if (tjDecompress2(tj, jpeg.data(), jpeg.size(), rgb.data(), w, 0, h, TJPF_RGB, 0) != 0) {
        std::fprintf(stderr, "%s: %s\n", argv[1], tjGetErrorStr2(tj));
        std::exit(1);
      }
    };
    for (int i = 0; i < 10; ++i) decode();  // warm up
    long n = 0;
    const double start = CpuSeconds();
    double now = start;
    while (now - start < seconds / 2) {
      for (int i = 0; i < 10; ++i) decode();
      n += 10;
      now = CpuSeconds();
    }
    return (now - start) / n * 1e6;
  };
  const double full = measure(1);
  const double eighth = measure(8);
  std::printf("%s %dx%d %.1f %.1f\n", argv[1], width, height, full, eighth);
  tjDestroy(tj);
  return 0;
}
