#include "server/rest_handler.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "server/rest_json.h"
#include "server/shared_memory_api.h"
#include "server/client_text.h"

namespace hgpipe::server {

unsigned HttpStatus(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss: return 500;
    // Triton reports a full queue and an expired timeout as UNAVAILABLE.
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDeadlineExceeded: return 503;
    default: return 400;
  }
}

namespace {

HttpResponse Error(unsigned status, absl::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = ErrorJson(message);
  return r;
}

HttpResponse Error(const absl::Status& s) { return Error(HttpStatus(s.code()), s.message()); }

HttpResponse Json(std::string body) {
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

HttpResponse Empty(unsigned status) {
  HttpResponse r;
  r.status = status;
  return r;
}

// %XX-decoding of one path segment (tritonclient quotes model names).
std::string Unescape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    int v;
    if (s[i] == '%' && i + 2 < s.size() && absl::SimpleHexAtoi(s.substr(i + 1, 2), &v)) {
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool Is(const HttpRequest& r, absl::string_view method) { return r.method == method; }

}  // namespace

void RestHandler::Handle(std::unique_ptr<HttpRequest> req, Reply reply) {
  std::vector<std::string> p;
  for (absl::string_view seg : absl::StrSplit(req->path, '/', absl::SkipEmpty())) {
    p.push_back(Unescape(seg));
  }
  const HttpRequest& r = *req;
  auto allowed = [&](ApiGroup g) {
    return restrictions_.Check(g, [&r](const std::string& name) { return r.Header(name); });
  };
  auto method = [&](absl::string_view m) {
    if (Is(r, m)) return true;
    reply(Error(405, absl::StrCat("Method Not Allowed: ", r.method.substr(0, 16), " ",
                                  r.path.substr(0, 200), " takes ", m)));
    return false;
  };
  auto guarded = [&](ApiGroup g) {
    absl::Status s = allowed(g);
    if (s.ok()) return true;
    reply(Error(s));
    return false;
  };
  if (p.empty() || p[0] != "v2") {
    reply(Error(404, absl::StrCat("no route ", r.path.substr(0, 200),
                                  " (the KServe v2 API is under /v2)")));
    return;
  }
  const size_t n = p.size();
  // v2
  if (n == 1) {
    if (!guarded(ApiGroup::kMetadata) || !method("GET")) return;
    reply(Json(MessageToJson(TritonApi::ServerMetadata())));
    return;
  }
  // v2/health/{live,ready}: never restricted.
  if (p[1] == "health" && n == 3 && (p[2] == "live" || p[2] == "ready")) {
    if (!method("GET")) return;
    reply(Empty(p[2] == "live" || pipeline_->Ready() ? 200 : 400));
    return;
  }
  if (p[1] == "repository") {
    if (!guarded(ApiGroup::kModelRepository) || !method("POST")) return;
    if (n == 3 && p[2] == "index") {
      inference::RepositoryIndexRequest index;
      if (!r.body.empty()) {
        rapidjson::Document doc;
        doc.Parse(r.body.data(), r.body.size());
        if (doc.HasParseError() || !doc.IsObject()) {
          reply(Error(400, "repository index: the body must be a JSON object"));
          return;
        }
        if (auto it = doc.FindMember("ready"); it != doc.MemberEnd()) {
          if (!it->value.IsBool()) {
            reply(Error(400, "Invalid value for 'ready': expected a boolean"));
            return;
          }
          index.set_ready(it->value.GetBool());
        }
      }
      absl::StatusOr<inference::RepositoryIndexResponse> resp = api_->RepositoryIndex(index);
      reply(resp.ok() ? Json(RepeatedToJsonArray(*resp, "models")) : Error(resp.status()));
      return;
    }
    if (n == 5 && p[2] == "models" && (p[4] == "load" || p[4] == "unload")) {
      const std::string model = p[3], action = p[4];
      Repository(std::move(req), model, action, std::move(reply));
      return;
    }
  }
  if (p[1] == "systemsharedmemory") {
    if (!guarded(ApiGroup::kSharedMemory)) return;
    // v2/systemsharedmemory[/region/NAME]/{status,register,unregister}
    const bool named = n == 5 && p[2] == "region";
    const std::string action = n == 3 || named ? p[n - 1] : "";
    const std::string region = named ? p[3] : "";
    if (action == "status") {
      if (!method("GET")) return;
      auto s = SystemSharedMemoryStatusJson(shared_memory_, region);
      reply(s.ok() ? Json(*std::move(s)) : Error(s.status()));
      return;
    }
    if (action == "unregister" || (action == "register" && named)) {
      if (!method("POST")) return;
      inference::SystemSharedMemoryUnregisterRequest unregister;
      unregister.set_name(region);
      absl::Status s = action == "register"
                           ? SystemSharedMemoryRegisterJson(shared_memory_, region, r.body)
                           : SystemSharedMemoryUnregister(shared_memory_, unregister);
      reply(s.ok() ? Empty(200) : Error(s));
      return;
    }
  }
  if (p[1] == "cudasharedmemory") {
    if (!guarded(ApiGroup::kSharedMemory)) return;
    reply(Error(501,
                "CUDA shared memory is not supported by hgpipe-server (it has no GPU; "
                "system shared memory is)"));
    return;
  }
  if (p[1] == "logging" && n == 2) {
    if (!guarded(ApiGroup::kLogging)) return;
    if (log_ == nullptr) {
      reply(Error(501, "changing log settings at run time is not supported here"));
      return;
    }
    if (Is(r, "GET")) {
      reply(Json(LogSettingsToJson(DescribeLogSettings(log_->Get()))));
      return;
    }
    if (!Is(r, "POST")) {
      reply(Error(405, absl::StrCat("Method Not Allowed: ", r.method.substr(0, 16),
                                    " v2/logging takes GET or POST")));
      return;
    }
    absl::StatusOr<NamedLogSettings> update = ParseLogSettingsJson(r.body);
    absl::StatusOr<LogSettings> now =
        update.ok() ? log_->Update(*update) : absl::StatusOr<LogSettings>(update.status());
    reply(now.ok() ? Json(LogSettingsToJson(DescribeLogSettings(*now))) : Error(now.status()));
    return;
  }
  // v2/trace/setting, v2/models/M[/versions/V]/trace/setting.
  if (p[1] == "trace" || (p[1] == "models" && n >= 4 && p[n - 2] == "trace")) {
    if (!guarded(ApiGroup::kTrace)) return;
    const bool global = n == 3 && p[1] == "trace";
    const bool model = p[1] == "models" && (n == 5 || (n == 7 && p[3] == "versions"));
    if (p[n - 1] != "setting" || !(global || model)) {
      reply(Error(
          404, absl::StrCat("no route ", r.path.substr(0, 200), " (v2[/models/M]/trace/setting)")));
      return;
    }
    if (!Is(r, "GET") && !Is(r, "POST")) {
      reply(Error(405, absl::StrCat("Method Not Allowed: ", r.method.substr(0, 16),
                                    " trace/setting takes GET or POST")));
      return;
    }
    absl::StatusOr<NamedTraceSettings> update = NamedTraceSettings();
    if (Is(r, "POST")) update = ParseTraceSettingsJson(r.body);
    absl::StatusOr<NamedTraceSettings> now =
        update.ok() ? api_->TraceSetting(model ? p[2] : "", *update) : update.status();
    reply(now.ok() ? Json(TraceSettingsToJson(*now)) : Error(now.status()));
    return;
  }
  if (p[1] == "models") {
    // v2/models/stats: every model.
    if (n == 3 && p[2] == "stats") {
      if (!guarded(ApiGroup::kStatistics) || !method("GET")) return;
      auto s = api_->ModelStatistics("", "");
      reply(s.ok() ? Json(MessageToJson(*s)) : Error(s.status()));
      return;
    }
    if (n >= 3) {
      const std::string model = p[2];
      std::string version;
      size_t i = 3;
      if (n >= 5 && p[3] == "versions") {
        version = p[4];
        i = 5;
      }
      const std::string action = i < n ? p[i] : "";
      if (i + 1 >= n) {
        if (action.empty()) {
          if (!guarded(ApiGroup::kMetadata) || !method("GET")) return;
          auto m = api_->ModelMetadata(model, version);
          reply(m.ok() ? Json(MessageToJson(*m)) : Error(m.status()));
          return;
        }
        if (action == "ready") {
          if (!method("GET")) return;
          auto ready = api_->ModelReady(model, version);
          reply(!ready.ok() ? Error(ready.status()) : Empty(*ready ? 200 : 400));
          return;
        }
        if (action == "config") {
          if (!guarded(ApiGroup::kModelConfig) || !method("GET")) return;
          auto c = api_->ModelConfig(model, version);
          reply(c.ok() ? Json(MessageToJson(c->config())) : Error(c.status()));
          return;
        }
        if (action == "stats") {
          if (!guarded(ApiGroup::kStatistics) || !method("GET")) return;
          auto s = api_->ModelStatistics(model, version);
          reply(s.ok() ? Json(MessageToJson(*s)) : Error(s.status()));
          return;
        }
        if (action == "infer") {
          if (!guarded(ApiGroup::kInference) || !method("POST")) return;
          Infer(std::move(req), model, version, std::move(reply));
          return;
        }
      }
    }
  }
  reply(Error(404, absl::StrCat("no route ", r.method.substr(0, 16), " ", r.path.substr(0, 200))));
}

void RestHandler::Infer(std::unique_ptr<HttpRequest> req, const std::string& model,
                        const std::string& version, Reply reply) {
  // Lives until the pipeline is done with the request and the response has
  // been written (the reply's binary parts point into it).
  struct Call {
    RestInferRequest in;
    inference::ModelInferResponse out;
  };
  auto call = std::make_shared<Call>();
  const absl::Time start = absl::Now();
  if (absl::Status s =
          ParseRestInferRequest(req->body, std::move(req->binary), model, version, &call->in);
      !s.ok()) {
    // The pipeline never sees it: the verbose line is written here.
    LogInferAnswer(Quote(model), call->in.request.id(), 0, s, absl::Now() - start);
    reply(Error(s));
    return;
  }
  req.reset();  // the JSON text is no longer needed
  Call* c = call.get();
  pipeline_->Infer(c->in.request, &c->out, absl::InfiniteFuture(),
                   {InferOrigin::Wire::kHttp, start},
                   [call = std::move(call), reply = std::move(reply)](absl::Status s) mutable {
                     if (!s.ok()) {
                       reply(Error(s));
                       return;
                     }
                     RestInferReply r = WriteRestInferResponse(call->out, call->in);
                     HttpResponse resp;
                     resp.body = std::move(r.json);
                     if (!r.binary.empty()) {
                       resp.binary = std::move(r.binary);
                       resp.binary_format = true;
                       resp.content_type = "application/octet-stream";
                     }
                     resp.keep = std::move(call);
                     reply(std::move(resp));
                   });
}

void RestHandler::Repository(std::unique_ptr<HttpRequest> req, const std::string& model,
                             const std::string& action, Reply reply) {
  google::protobuf::Map<std::string, inference::ModelRepositoryParameter> params;
  if (!req->body.empty()) {
    rapidjson::Document doc;
    doc.Parse(req->body.data(), req->body.size());
    if (doc.HasParseError() || !doc.IsObject()) {
      reply(Error(400,
                  absl::StrCat(action, " model: the body must be a JSON object",
                               doc.HasParseError() ? absl::StrCat(": ", rapidjson::GetParseError_En(
                                                                            doc.GetParseError()))
                                                   : "")));
      return;
    }
    if (auto it = doc.FindMember("parameters"); it != doc.MemberEnd()) {
      if (!it->value.IsObject()) {
        reply(Error(400, absl::StrCat(action, " model: parameters must be an object")));
        return;
      }
      for (auto m = it->value.MemberBegin(); m != it->value.MemberEnd(); ++m) {
        const std::string key(m->name.GetString(), m->name.GetStringLength());
        inference::ModelRepositoryParameter& p = params[key];
        if (m->value.IsBool()) {
          p.set_bool_param(m->value.GetBool());
        } else if (m->value.IsInt64()) {
          p.set_int64_param(m->value.GetInt64());
        } else if (m->value.IsString()) {
          p.set_string_param(std::string(m->value.GetString(), m->value.GetStringLength()));
        } else {
          reply(Error(400, absl::StrCat("parameter ", Quote(key),
                                        ": must be a boolean, integer or string")));
          return;
        }
      }
    }
  }
  auto done = [reply = std::move(reply)](absl::Status s) mutable {
    reply(s.ok() ? Empty(200) : Error(s));
  };
  if (action == "load") {
    inference::RepositoryModelLoadRequest load;
    load.set_model_name(model);
    *load.mutable_parameters() = std::move(params);
    api_->Load(load, std::move(done));
  } else {
    inference::RepositoryModelUnloadRequest unload;
    unload.set_model_name(model);
    *unload.mutable_parameters() = std::move(params);
    api_->Unload(unload, std::move(done));
  }
}

}  // namespace hgpipe::server
