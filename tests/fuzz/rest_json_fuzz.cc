// The REST request parser: any bytes as a KServe v2 REST inference body,
// split the way Triton's binary extension splits it (the first 4 bytes, read
// as Inference-Header-Content-Length, say how much of the rest is the JSON
// header; the remainder is binary tensor data), then the parsed request
// validated against the bundled models' configs and a response written back
// for the outputs it asked for. The whole input is also a log settings and
// a trace settings body, applied globally and to a model. Bad input must be
// refused with a status, never crash, read out of bounds or allocate
// without bound.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "server/infer_request.h"
#include "server/log_control.h"
#include "server/trace_control.h"
#include "tests/fuzz/bundled_configs.h"
#include "server/rest_json.h"

namespace {

const std::vector<hgpipe::config::ModelConfig>* configs;
hgpipe::server::TraceControl* trace;  // no trace file: nothing is written

void CheckSettings(const std::string& json) {
  if (auto log = hgpipe::server::ParseLogSettingsJson(json); log.ok()) {
    (void)hgpipe::server::ApplyLogSettings(hgpipe::server::LogSettings(), *log);
  }
  if (auto update = hgpipe::server::ParseTraceSettingsJson(json); update.ok()) {
    for (const char* model : {"", "fmnist_vit"}) {
      if (auto now = trace->Update(model, *update); now.ok()) {
        volatile size_t sink = hgpipe::server::TraceSettingsToJson(*now).size();
        (void)sink;
      }
    }
  }
}

void Check(std::string json, std::string binary) {
  hgpipe::server::RestInferRequest in;
  if (!hgpipe::server::ParseRestInferRequest(json, std::move(binary), "fmnist_vit", "1", &in)
           .ok()) {
    return;
  }
  for (const auto& c : *configs) {
    (void)hgpipe::server::PrepareInput(in.request, c);
    (void)hgpipe::server::ParseRequestPolicy(in.request, c);
  }
  // A response with each output the request named (or LOGITS), as the
  // pipeline would fill it: 10 INT32 logits a row.
  inference::ModelInferResponse response;
  response.set_model_name("fmnist_vit");
  response.set_id(in.request.id());
  std::vector<std::string> names;
  for (const auto& o : in.request.outputs()) names.push_back(o.name());
  if (names.empty()) names.push_back("LOGITS");
  for (const std::string& name : names) {
    auto* o = response.add_outputs();
    o->set_name(name);
    o->set_datatype("INT32");
    o->add_shape(1);
    o->add_shape(10);
    response.add_raw_output_contents(std::string(40, '\1'));
  }
  hgpipe::server::RestInferReply reply = hgpipe::server::WriteRestInferResponse(response, in);
  volatile size_t sink = reply.json.size();
  for (absl::string_view b : reply.binary) sink = sink + (b.empty() ? 0 : b.back());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  configs = hgpipe::fuzz::InitBundledConfigs();
  trace = new hgpipe::server::TraceControl(hgpipe::server::TraceSettings{});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  // The whole input as a JSON body, with no binary part.
  Check(std::string(bytes, size), "");
  CheckSettings(std::string(bytes, size));
  if (size < 4) return 0;
  uint32_t header = 0;
  memcpy(&header, data, 4);
  const size_t json_size = header % (size - 4 + 1);
  Check(std::string(bytes + 4, json_size),
        std::string(bytes + 4 + json_size, size - 4 - json_size));
  return 0;
}
