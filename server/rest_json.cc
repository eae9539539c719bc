#include "server/rest_json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <tuple>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "server/client_text.h"

namespace hgpipe::server {
namespace {

using Value = rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Nesting of a tensor's "data" arrays beyond any real tensor's rank.
constexpr int kMaxDataDepth = 32;

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(what); }

const char* TypeName(const Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType: return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return "a boolean";
    case rapidjson::kObjectType: return "an object";
    case rapidjson::kArrayType: return "an array";
    case rapidjson::kStringType: return "a string";
    case rapidjson::kNumberType: return "a number";
  }
  return "?";
}

// A request or tensor "parameters" object into a parameter map.
absl::Status ReadParameters(const Value& params, absl::string_view where,
                            google::protobuf::Map<std::string, inference::InferParameter>* out,
                            const std::function<bool(const std::string&, const Value&)>& special) {
  if (!params.IsObject()) {
    return Bad(absl::StrCat(where, "parameters: must be an object, not ", TypeName(params)));
  }
  for (auto it = params.MemberBegin(); it != params.MemberEnd(); ++it) {
    std::string key(it->name.GetString(), it->name.GetStringLength());
    const Value& v = it->value;
    if (special(key, v)) continue;
    inference::InferParameter& p = (*out)[key];
    if (v.IsBool()) {
      p.set_bool_param(v.GetBool());
    } else if (v.IsInt64()) {
      p.set_int64_param(v.GetInt64());
    } else if (v.IsUint64()) {
      p.set_uint64_param(v.GetUint64());
    } else if (v.IsNumber()) {
      p.set_double_param(v.GetDouble());
    } else if (v.IsString()) {
      p.set_string_param(std::string(v.GetString(), v.GetStringLength()));
    } else {
      return Bad(absl::StrCat(where, "parameter ", Quote(key), ": ", TypeName(v),
                              " is not a boolean, number or string"));
    }
  }
  return absl::OkStatus();
}

// Appends the elements of `data` (nested arrays, row-major) to the typed
// contents of `datatype`, checking each fits.
class DataReader {
 public:
  DataReader(absl::string_view input, absl::string_view datatype,
             inference::InferTensorContents* out)
      : input_(input), datatype_(datatype), out_(out) {}

  absl::Status Read(const Value& v, int depth) {
    if (v.IsArray()) {
      if (depth >= kMaxDataDepth) {
        return Bad(absl::StrCat("input '", input_, "': data is nested deeper than ", kMaxDataDepth,
                                " arrays"));
      }
      for (const Value& e : v.GetArray()) {
        if (absl::Status s = Read(e, depth + 1); !s.ok()) return s;
      }
      return absl::OkStatus();
    }
    if (absl::Status s = Add(v); !s.ok()) return s;
    ++count_;
    return absl::OkStatus();
  }
  int64_t count() const { return count_; }

 private:
  absl::Status NotA(const Value& v) const {
    std::string shown;
    if (v.IsNumber()) {
      shown = v.IsInt64()    ? absl::StrCat(v.GetInt64())
              : v.IsUint64() ? absl::StrCat(v.GetUint64())
                             : absl::StrCat(v.GetDouble());
    } else {
      shown = TypeName(v);
    }
    return Bad(
        absl::StrCat("input '", input_, "': data[", count_, "] = ", shown, " is not ", datatype_));
  }
  template <typename T>
  bool Fits(const Value& v) const {
    if constexpr (std::is_signed_v<T>) {
      return v.IsInt64() && v.GetInt64() >= std::numeric_limits<T>::min() &&
             v.GetInt64() <= std::numeric_limits<T>::max();
    } else {
      return v.IsUint64() && v.GetUint64() <= std::numeric_limits<T>::max();
    }
  }
  absl::Status Add(const Value& v) {
    const absl::string_view t = datatype_;
    if (t == "INT8" || t == "INT16" || t == "INT32") {
      const bool ok = t == "INT8"    ? Fits<int8_t>(v)
                      : t == "INT16" ? Fits<int16_t>(v)
                                     : Fits<int32_t>(v);
      if (!ok) return NotA(v);
      out_->add_int_contents(static_cast<int32_t>(v.GetInt64()));
    } else if (t == "UINT8" || t == "UINT16" || t == "UINT32") {
      const bool ok = t == "UINT8"    ? Fits<uint8_t>(v)
                      : t == "UINT16" ? Fits<uint16_t>(v)
                                      : Fits<uint32_t>(v);
      if (!ok) return NotA(v);
      out_->add_uint_contents(static_cast<uint32_t>(v.GetUint64()));
    } else if (t == "INT64") {
      if (!v.IsInt64()) return NotA(v);
      out_->add_int64_contents(v.GetInt64());
    } else if (t == "UINT64") {
      if (!v.IsUint64()) return NotA(v);
      out_->add_uint64_contents(v.GetUint64());
    } else if (t == "FP32") {
      if (!v.IsNumber()) return NotA(v);
      out_->add_fp32_contents(static_cast<float>(v.GetDouble()));
    } else if (t == "FP64") {
      if (!v.IsNumber()) return NotA(v);
      out_->add_fp64_contents(v.GetDouble());
    } else if (t == "BOOL") {
      if (!v.IsBool()) return NotA(v);
      out_->add_bool_contents(v.GetBool());
    } else if (t == "BYTES") {
      if (!v.IsString()) return NotA(v);
      out_->add_bytes_contents(std::string(v.GetString(), v.GetStringLength()));
    } else {
      return Bad(absl::StrCat("input '", input_, "': datatype ", datatype_.substr(0, 16),
                              " cannot travel as JSON data (use binary data)"));
    }
    return absl::OkStatus();
  }

  const std::string input_;
  const std::string datatype_;
  inference::InferTensorContents* const out_;
  int64_t count_ = 0;
};

std::string Str(const Value& v) { return std::string(v.GetString(), v.GetStringLength()); }

}  // namespace

std::string ErrorJson(absl::string_view message) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("error");
  w.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

namespace {

// A settings body (log or trace): a JSON object, else InvalidArgument
// naming `what` and the parse error.
absl::Status ParseSettingsObject(absl::string_view json, absl::string_view what,
                                 rapidjson::Document* doc) {
  doc->Parse(json.data(), json.size());
  if (!doc->HasParseError() && doc->IsObject()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": the body must be a JSON object",
      doc->HasParseError() ? absl::StrCat(": ", rapidjson::GetParseError_En(doc->GetParseError()))
                           : ""));
}

}  // namespace

absl::StatusOr<NamedLogSettings> ParseLogSettingsJson(absl::string_view json) {
  rapidjson::Document doc;
  if (absl::Status s = ParseSettingsObject(json, "log settings", &doc); !s.ok()) return s;
  NamedLogSettings settings;
  for (auto m = doc.MemberBegin(); m != doc.MemberEnd(); ++m) {
    std::string name(m->name.GetString(), m->name.GetStringLength());
    const rapidjson::Value& v = m->value;
    if (v.IsNull()) {
      settings.emplace_back(std::move(name), std::monostate());
    } else if (v.IsBool()) {
      settings.emplace_back(std::move(name), v.GetBool());
    } else if (v.IsUint()) {
      settings.emplace_back(std::move(name), static_cast<uint32_t>(v.GetUint()));
    } else if (v.IsString()) {
      settings.emplace_back(std::move(name), std::string(v.GetString(), v.GetStringLength()));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "log setting ", Quote(name),
          ": the value must be a boolean, an unsigned 32-bit integer, a string or null"));
    }
  }
  return settings;
}

absl::StatusOr<NamedTraceSettings> ParseTraceSettingsJson(absl::string_view json) {
  rapidjson::Document doc;
  if (absl::Status s = ParseSettingsObject(json, "trace settings", &doc); !s.ok()) return s;
  NamedTraceSettings settings;
  for (auto m = doc.MemberBegin(); m != doc.MemberEnd(); ++m) {
    std::string name(m->name.GetString(), m->name.GetStringLength());
    const rapidjson::Value& v = m->value;
    auto text = [](const rapidjson::Value& s) {
      return std::string(s.GetString(), s.GetStringLength());
    };
    TraceSettingValue value;
    if (v.IsString()) {
      value.emplace(1, text(v));
    } else if (v.IsArray()) {
      value.emplace();
      for (const rapidjson::Value& e : v.GetArray()) {
        if (!e.IsString()) {
          return absl::InvalidArgumentError(
              absl::StrCat("trace setting ", Quote(name), ": an array of strings only"));
        }
        value->push_back(text(e));
      }
    } else if (!v.IsNull()) {
      return absl::InvalidArgumentError(
          absl::StrCat("trace setting ", Quote(name),
                       ": the value must be a string, an array of strings or null"));
    }
    settings.emplace_back(std::move(name), std::move(value));
  }
  return settings;
}

std::string TraceSettingsToJson(const NamedTraceSettings& settings) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  for (const auto& [name, value] : settings) {
    w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    const std::vector<std::string> values = value.value_or(std::vector<std::string>());
    const bool list = name == "trace_level";
    if (list) w.StartArray();
    for (const std::string& v : values) {
      w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
      if (!list) break;
    }
    if (list) {
      w.EndArray();
    } else if (values.empty()) {
      w.String("");
    }
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string LogSettingsToJson(const NamedLogSettings& settings) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  for (const auto& [name, value] : settings) {
    w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    if (const bool* b = std::get_if<bool>(&value)) {
      w.Bool(*b);
    } else if (const uint32_t* u = std::get_if<uint32_t>(&value)) {
      w.Uint(*u);
    } else if (const std::string* s = std::get_if<std::string>(&value)) {
      w.String(s->data(), static_cast<rapidjson::SizeType>(s->size()));
    } else {
      w.Null();
    }
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

absl::Status ParseRestInferRequest(std::string& json, std::string binary, const std::string& model,
                                   const std::string& version, RestInferRequest* out) {
  inference::ModelInferRequest& req = out->request;
  req.set_model_name(model);
  req.set_model_version(version);
  // The parser stops at a NUL byte: binary data sent without
  // Inference-Header-Content-Length would be silently cut off.
  if (const size_t nul = json.find('\0'); nul != std::string::npos) {
    return Bad(absl::StrCat("the JSON request body holds a NUL byte at byte ", nul,
                            "; binary tensor data needs Inference-Header-Content-Length"));
  }
  rapidjson::Document doc;
  // In place: strings stay in `json`. Iterative: deep nesting cannot
  // exhaust the stack.
  doc.ParseInsitu<rapidjson::kParseIterativeFlag>(json.data());
  if (doc.HasParseError()) {
    return Bad(absl::StrCat("malformed JSON in the request body at byte ", doc.GetErrorOffset(),
                            ": ", rapidjson::GetParseError_En(doc.GetParseError())));
  }
  if (!doc.IsObject()) {
    return Bad(absl::StrCat("the request body must be a JSON object, not ", TypeName(doc)));
  }
  if (auto it = doc.FindMember("id"); it != doc.MemberEnd()) {
    if (!it->value.IsString()) return Bad("id: must be a string");
    req.set_id(Str(it->value));
  }
  if (auto it = doc.FindMember("parameters"); it != doc.MemberEnd()) {
    absl::Status s = ReadParameters(it->value, "", req.mutable_parameters(),
                                    [out](const std::string& key, const Value& v) {
                                      if (key != "binary_data_output") return false;
                                      out->binary_output = v.IsBool() && v.GetBool();
                                      return true;
                                    });
    if (!s.ok()) return s;
  }
  auto inputs = doc.FindMember("inputs");
  if (inputs == doc.MemberEnd() || !inputs->value.IsArray()) {
    return Bad("inputs: missing, or not an array");
  }
  size_t binary_used = 0;
  // (input index, offset, size) of binary inputs.
  std::vector<std::tuple<int, size_t, size_t>> binary_inputs;
  int json_inputs = 0;
  for (const Value& in : inputs->value.GetArray()) {
    const int index = req.inputs_size();
    auto* t = req.add_inputs();
    if (!in.IsObject()) return Bad(absl::StrCat("inputs[", index, "]: must be an object"));
    auto name = in.FindMember("name");
    if (name == in.MemberEnd() || !name->value.IsString()) {
      return Bad(absl::StrCat("inputs[", index, "].name: missing, or not a string"));
    }
    t->set_name(Str(name->value));
    const std::string where = absl::StrCat("input ", Quote(t->name()), ": ");
    auto datatype = in.FindMember("datatype");
    if (datatype == in.MemberEnd() || !datatype->value.IsString()) {
      return Bad(absl::StrCat(where, "datatype: missing, or not a string"));
    }
    t->set_datatype(Str(datatype->value));
    auto shape = in.FindMember("shape");
    if (shape == in.MemberEnd() || !shape->value.IsArray()) {
      return Bad(absl::StrCat(where, "shape: missing, or not an array"));
    }
    int64_t elements = 1;
    for (const Value& d : shape->value.GetArray()) {
      if (!d.IsInt64() || d.GetInt64() < 0) {
        return Bad(absl::StrCat(where, "shape: dimensions must be integers >= 0"));
      }
      t->add_shape(d.GetInt64());
      elements = d.GetInt64() != 0 && elements > INT64_MAX / d.GetInt64() ? INT64_MAX
                                                                          : elements * d.GetInt64();
    }
    int64_t binary_size = -1;
    if (auto p = in.FindMember("parameters"); p != in.MemberEnd()) {
      absl::Status bad_size;
      absl::Status s = ReadParameters(
          p->value, where, t->mutable_parameters(), [&](const std::string& key, const Value& v) {
            if (key != "binary_data_size") return false;
            if (!v.IsUint64()) {
              bad_size = Bad(absl::StrCat(where, "binary_data_size: must be an integer >= 0"));
            } else {
              binary_size = static_cast<int64_t>(std::min<uint64_t>(v.GetUint64(), INT64_MAX));
            }
            return true;
          });
      if (!bad_size.ok()) return bad_size;
      if (!s.ok()) return s;
    }
    auto data = in.FindMember("data");
    // In shared memory (server/shared_memory_tensors.h): no data here.
    if (t->parameters().contains("shared_memory_region")) {
      if (binary_size >= 0 || data != in.MemberEnd()) {
        return Bad(absl::StrCat(where, "has shared_memory_region and also ",
                                binary_size >= 0 ? "binary_data_size" : "data", "; use one"));
      }
      continue;
    }
    if (binary_size >= 0) {
      if (data != in.MemberEnd()) {
        return Bad(absl::StrCat(where, "has both data and binary_data_size; use one"));
      }
      if (static_cast<uint64_t>(binary_size) > binary.size() - binary_used) {
        return Bad(absl::StrCat(where, "binary_data_size ", binary_size,
                                " overruns the binary data: ", binary.size() - binary_used,
                                " bytes remain after the JSON header"));
      }
      binary_inputs.emplace_back(index, binary_used, binary_size);
      binary_used += binary_size;
      continue;
    }
    if (data == in.MemberEnd()) {
      return Bad(absl::StrCat(where, "has neither data nor binary_data_size"));
    }
    ++json_inputs;
    DataReader reader(t->name(), t->datatype(), t->mutable_contents());
    if (absl::Status s = reader.Read(data->value, 0); !s.ok()) return s;
    if (reader.count() != elements) {
      // INT64_MAX: the product may have saturated (it is at least that).
      return Bad(absl::StrCat(where, "data holds ", reader.count(), " elements; shape [",
                              absl::StrJoin(t->shape(), ", "), "] needs ",
                              elements == INT64_MAX ? "at least " : "", elements));
    }
  }
  if (binary_used != binary.size()) {
    return Bad(absl::StrCat("the body has ", binary.size() - binary_used,
                            " bytes of binary data that no input's binary_data_size claims"));
  }
  if (!binary_inputs.empty() && json_inputs > 0) {
    return Bad("inputs mix JSON data and binary data; send all of them one way");
  }
  if (binary_inputs.size() == 1) {
    // The common case, one image tensor: the body's bytes become the
    // request's raw contents without a copy.
    *req.add_raw_input_contents() = std::move(binary);
  } else {
    for (const auto& [index, offset, size] : binary_inputs) {
      req.add_raw_input_contents()->assign(binary, offset, size);
    }
  }
  if (auto outputs = doc.FindMember("outputs"); outputs != doc.MemberEnd()) {
    if (!outputs->value.IsArray()) return Bad("outputs: must be an array");
    for (const Value& o : outputs->value.GetArray()) {
      const int index = req.outputs_size();
      auto* t = req.add_outputs();
      if (!o.IsObject()) return Bad(absl::StrCat("outputs[", index, "]: must be an object"));
      auto name = o.FindMember("name");
      if (name == o.MemberEnd() || !name->value.IsString()) {
        return Bad(absl::StrCat("outputs[", index, "].name: missing, or not a string"));
      }
      t->set_name(Str(name->value));
      bool binary_data = out->binary_output;
      if (auto p = o.FindMember("parameters"); p != o.MemberEnd()) {
        absl::Status s =
            ReadParameters(p->value, absl::StrCat("output ", Quote(t->name()), ": "),
                           t->mutable_parameters(), [&](const std::string& key, const Value& v) {
                             if (key != "binary_data") return false;
                             binary_data = v.IsBool() && v.GetBool();
                             return true;
                           });
        if (!s.ok()) return s;
      }
      out->output_binary.emplace_back(t->name(), binary_data);
    }
  }
  return absl::OkStatus();
}

namespace {

// Writes raw little-endian `raw` of `datatype` as a flat JSON array.
void WriteData(absl::string_view datatype, const std::string& raw, Writer& w) {
  w.StartArray();
  auto each = [&raw](auto type_tag, auto write) {
    using T = decltype(type_tag);
    for (size_t i = 0; i + sizeof(T) <= raw.size(); i += sizeof(T)) {
      T v;
      std::memcpy(&v, raw.data() + i, sizeof(T));
      write(v);
    }
  };
  if (datatype == "INT32") {
    each(int32_t{}, [&w](int32_t v) { w.Int(v); });
  } else if (datatype == "FP32") {
    each(float{}, [&w](float v) {
      if (std::isfinite(v)) {
        // Shortest decimal that reads back as the same float.
        char buf[32];
        const int n = std::snprintf(buf, sizeof(buf), "%.9g", v);
        w.RawValue(buf, static_cast<size_t>(n), rapidjson::kNumberType);
      } else {
        w.Null();
      }
    });
  } else if (datatype == "INT8") {
    each(int8_t{}, [&w](int8_t v) { w.Int(v); });
  } else if (datatype == "UINT8") {
    each(uint8_t{}, [&w](uint8_t v) { w.Uint(v); });
  } else if (datatype == "INT64") {
    each(int64_t{}, [&w](int64_t v) { w.Int64(v); });
  } else if (datatype == "BYTES") {
    size_t pos = 0;
    while (pos + 4 <= raw.size()) {
      uint32_t len;
      std::memcpy(&len, raw.data() + pos, 4);
      pos += 4;
      len = static_cast<uint32_t>(std::min<size_t>(len, raw.size() - pos));
      w.String(raw.data() + pos, len);
      pos += len;
    }
  }
  w.EndArray();
}

void WriteField(const google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f,
                Writer& w);

// The value an InferParameter holds (null if none).
void WriteParameterValue(const google::protobuf::Message& m, Writer& w) {
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (r->HasField(m, f)) {
      WriteField(m, f, w);
      return;
    }
  }
  w.Null();
}

void WriteMessage(const google::protobuf::Message& m, Writer& w) {
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  w.StartObject();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->containing_oneof() != nullptr && !r->HasField(m, f)) continue;
    if (!f->is_repeated() && f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE &&
        !r->HasField(m, f)) {
      continue;
    }
    w.Key(f->name().c_str());
    WriteField(m, f, w);
  }
  w.EndObject();
}

void WriteValue(const google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f,
                int index, Writer& w) {
  using FD = google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FD::CPPTYPE_INT32:
      w.Int(rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      break;
    case FD::CPPTYPE_INT64:
      w.Int64(rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      break;
    case FD::CPPTYPE_UINT32:
      w.Uint(rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
      break;
    case FD::CPPTYPE_UINT64:
      w.Uint64(rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
      break;
    case FD::CPPTYPE_DOUBLE:
      w.Double(rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f));
      break;
    case FD::CPPTYPE_FLOAT:
      w.Double(rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f));
      break;
    case FD::CPPTYPE_BOOL: w.Bool(rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)); break;
    case FD::CPPTYPE_ENUM: {
      const auto* e = rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f);
      w.String(e->name().c_str());
      break;
    }
    case FD::CPPTYPE_STRING: {
      const std::string s = rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
      w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
      break;
    }
    case FD::CPPTYPE_MESSAGE:
      WriteMessage(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f), w);
      break;
  }
}

void WriteField(const google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f,
                Writer& w) {
  const google::protobuf::Reflection* r = m.GetReflection();
  if (f->is_map()) {
    // Map entries are messages {key, value}: a JSON object keyed by key.
    const google::protobuf::FieldDescriptor* key = f->message_type()->map_key();
    const google::protobuf::FieldDescriptor* value = f->message_type()->map_value();
    std::vector<std::pair<std::string, const google::protobuf::Message*>> entries;
    for (int i = 0; i < r->FieldSize(m, f); ++i) {
      const google::protobuf::Message& e = r->GetRepeatedMessage(m, f, i);
      const google::protobuf::Reflection* er = e.GetReflection();
      std::string k;
      switch (key->cpp_type()) {
        case google::protobuf::FieldDescriptor::CPPTYPE_STRING: k = er->GetString(e, key); break;
        case google::protobuf::FieldDescriptor::CPPTYPE_UINT64:
          k = absl::StrCat(er->GetUInt64(e, key));
          break;
        case google::protobuf::FieldDescriptor::CPPTYPE_INT64:
          k = absl::StrCat(er->GetInt64(e, key));
          break;
        default: k = "?";
      }
      entries.emplace_back(std::move(k), &e);
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    // KServe's REST parameters are plain JSON values, not InferParameter
    // objects.
    const bool parameters =
        value->message_type() != nullptr &&
        value->message_type()->full_name() == inference::InferParameter::descriptor()->full_name();
    w.StartObject();
    for (const auto& [k, e] : entries) {
      w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
      if (parameters) {
        WriteParameterValue(e->GetReflection()->GetMessage(*e, value), w);
      } else {
        WriteValue(*e, value, -1, w);
      }
    }
    w.EndObject();
    return;
  }
  if (f->is_repeated()) {
    w.StartArray();
    for (int i = 0; i < r->FieldSize(m, f); ++i) WriteValue(m, f, i, w);
    w.EndArray();
    return;
  }
  WriteValue(m, f, -1, w);
}

}  // namespace

RestInferReply WriteRestInferResponse(const inference::ModelInferResponse& resp,
                                      const RestInferRequest& request) {
  RestInferReply reply;
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("model_name");
  w.String(resp.model_name().c_str());
  w.Key("model_version");
  w.String(resp.model_version().c_str());
  if (!resp.id().empty()) {
    w.Key("id");
    w.String(resp.id().data(), static_cast<rapidjson::SizeType>(resp.id().size()));
  }
  w.Key("outputs");
  w.StartArray();
  for (int i = 0; i < resp.outputs_size(); ++i) {
    const auto& o = resp.outputs(i);
    bool binary = request.binary_output;
    for (const auto& [name, b] : request.output_binary) {
      if (name == o.name()) binary = b;
    }
    const std::string& raw = resp.raw_output_contents(i);
    bool in_shared_memory = false;
    for (const auto& requested : request.request.outputs()) {
      if (requested.name() == o.name() && requested.parameters().contains("shared_memory_region")) {
        in_shared_memory = true;
      }
    }
    w.StartObject();
    w.Key("name");
    w.String(o.name().c_str());
    w.Key("datatype");
    w.String(o.datatype().c_str());
    w.Key("shape");
    w.StartArray();
    for (int64_t d : o.shape()) w.Int64(d);
    w.EndArray();
    if (in_shared_memory) {
      // As Triton: the data is in the region, the output has none here.
    } else if (binary) {
      w.Key("parameters");
      w.StartObject();
      w.Key("binary_data_size");
      w.Uint64(raw.size());
      w.EndObject();
      reply.binary.emplace_back(raw);
    } else {
      w.Key("data");
      WriteData(o.datatype(), raw, w);
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  reply.json.assign(buf.GetString(), buf.GetSize());
  return reply;
}

std::string MessageToJson(const google::protobuf::Message& message) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  WriteMessage(message, w);
  return std::string(buf.GetString(), buf.GetSize());
}

std::string RepeatedToJsonArray(const google::protobuf::Message& message, absl::string_view field) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  const auto* f = message.GetDescriptor()->FindFieldByName(std::string(field));
  if (f == nullptr || !f->is_repeated()) {
    w.StartArray();
    w.EndArray();
  } else {
    WriteField(message, f, w);
  }
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace hgpipe::server
