#include "accel/device_layout.h"

#include <cstring>

namespace hgpipe::accel {
namespace {

// Walks the device order beat by beat: beat (tp, cp) carries tokens 2tp, 2tp+1
// and values 2cp, 2cp+1, token-major inside the beat. `ToDevice` picks the
// copy direction so both functions share one index map.
template <bool ToDevice>
void Reorder(const DeviceGeometry& g, const int8_t* src, int8_t* dst) {
  const uint32_t pairs = g.token_values / 2;
  const size_t row = g.token_values;
  size_t d = 0;
  for (uint32_t tp = 0; tp < g.tokens / 2; ++tp) {
    const size_t row0 = (2 * size_t{tp}) * row;
    const size_t row1 = row0 + row;
    for (uint32_t cp = 0; cp < pairs; ++cp, d += 4) {
      const size_t c = 2 * size_t{cp};
      if constexpr (ToDevice) {
        std::memcpy(dst + d, src + row0 + c, 2);
        std::memcpy(dst + d + 2, src + row1 + c, 2);
      } else {
        std::memcpy(dst + row0 + c, src + d, 2);
        std::memcpy(dst + row1 + c, src + d + 2, 2);
      }
    }
  }
}

}  // namespace

void PackImage(const DeviceGeometry& g, const int8_t* flat, int8_t* device) {
  Reorder<true>(g, flat, device);
}

void UnpackImage(const DeviceGeometry& g, const int8_t* device, int8_t* flat) {
  Reorder<false>(g, device, flat);
}

}  // namespace hgpipe::accel
