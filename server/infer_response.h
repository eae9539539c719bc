// Turning the integer logits the scheduler wrote into a response's raw
// output into what the model and the client ask for.
#ifndef HGPIPE_SERVER_INFER_RESPONSE_H_
#define HGPIPE_SERVER_INFER_RESPONSE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "proto/grpc_service.pb.h"

namespace hgpipe::server {

struct OutputSpec {
  std::string name;
  bool fp32 = false;  // dequantize: value = logit * logit_scale
  double logit_scale = 1.0;
  uint32_t classification = 0;                       // top K instead of logits; 0: logits
  const std::vector<std::string>* labels = nullptr;  // may be empty
};

// Adds output 0 to `resp` with a raw buffer for n x classes int32 logits and
// returns where the scheduler writes them.
int32_t* AddLogitOutput(uint32_t n, uint32_t classes, const std::string& name,
                        inference::ModelInferResponse* resp);

// Rewrites output 0 of `resp`, holding n x classes int32 logits, as `spec`
// says: FP32 values in place, or BYTES [n, K] of Triton's classification
// strings "score:index" / "score:index:label", best first (ties: lower index).
void FinishLogitOutput(const OutputSpec& spec, uint32_t n, uint32_t classes,
                       inference::ModelInferResponse* resp);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_INFER_RESPONSE_H_
