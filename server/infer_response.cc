#include "server/infer_response.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hgpipe::server {

int32_t* AddLogitOutput(uint32_t n, uint32_t classes, const std::string& name,
                        inference::ModelInferResponse* resp) {
  auto* out = resp->add_outputs();
  out->set_name(name);
  out->set_datatype("INT32");
  out->add_shape(n);
  out->add_shape(classes);
  std::string* raw = resp->add_raw_output_contents();
  raw->resize(size_t{n} * classes * sizeof(int32_t));
  // Heap storage of std::string is aligned for int32_t; hosts are
  // little-endian, the wire order of raw contents.
  return reinterpret_cast<int32_t*>(raw->data());
}

void FinishLogitOutput(const OutputSpec& spec, uint32_t n, uint32_t classes,
                       inference::ModelInferResponse* resp) {
  auto* out = resp->mutable_outputs(0);
  std::string* raw = resp->mutable_raw_output_contents(0);
  int32_t* logits = reinterpret_cast<int32_t*>(raw->data());
  const float scale = static_cast<float>(spec.logit_scale);
  if (spec.classification == 0) {
    if (spec.fp32) {
      // Same width: convert in place, no second buffer.
      for (size_t i = 0; i < size_t{n} * classes; ++i) {
        const float v = static_cast<float>(logits[i]) * scale;
        std::memcpy(&logits[i], &v, sizeof(v));
      }
      out->set_datatype("FP32");
    }
    return;
  }
  const uint32_t k = std::min(spec.classification, classes);
  std::string bytes;
  std::vector<uint32_t> order(classes);
  for (uint32_t i = 0; i < n; ++i) {
    const int32_t* row = logits + size_t{i} * classes;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](uint32_t a, uint32_t b) {
      return row[a] != row[b] ? row[a] > row[b] : a < b;
    });
    for (uint32_t j = 0; j < k; ++j) {
      const uint32_t c = order[j];
      std::string s = spec.fp32 ? absl::StrFormat("%f:%d", row[c] * scale, c)
                                : absl::StrFormat("%d:%d", row[c], c);
      if (spec.labels != nullptr && c < spec.labels->size()) {
        absl::StrAppend(&s, ":", (*spec.labels)[c]);
      }
      const uint32_t len = static_cast<uint32_t>(s.size());
      bytes.append(reinterpret_cast<const char*>(&len), 4);
      bytes.append(s);
    }
  }
  *raw = std::move(bytes);
  out->set_datatype("BYTES");
  out->clear_shape();
  out->add_shape(n);
  out->add_shape(k);
}

}  // namespace hgpipe::server
