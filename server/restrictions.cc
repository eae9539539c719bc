#include "server/restrictions.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/client_text.h"

namespace hgpipe::server {
namespace {

constexpr std::pair<absl::string_view, ApiGroup> kGroups[] = {
    {"metadata", ApiGroup::kMetadata},
    {"inference", ApiGroup::kInference},
    {"shared-memory", ApiGroup::kSharedMemory},
    {"model-config", ApiGroup::kModelConfig},
    {"model-repository", ApiGroup::kModelRepository},
    {"statistics", ApiGroup::kStatistics},
    {"trace", ApiGroup::kTrace},
    {"logging", ApiGroup::kLogging},
};

}  // namespace

absl::StatusOr<Restrictions> Restrictions::Parse(absl::string_view flag_name,
                                                 const std::vector<std::string>& flags,
                                                 absl::string_view header_prefix) {
  Restrictions out;
  for (const std::string& flag : flags) {
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag_name, " ", Quote(flag), ": ", why));
    };
    const size_t colon = flag.find(':');
    const size_t eq = colon == std::string::npos ? colon : flag.find('=', colon + 1);
    if (colon == std::string::npos || eq == std::string::npos || colon == 0 || eq == colon + 1 ||
        eq + 1 == flag.size()) {
      return bad("expected GROUPS:KEY=VALUE, e.g. model-repository,statistics:admin-key=secret");
    }
    const std::string key = absl::AsciiStrToLower(flag.substr(colon + 1, eq - colon - 1));
    const std::string value = flag.substr(eq + 1);
    for (absl::string_view name : absl::StrSplit(flag.substr(0, colon), ',')) {
      if (name == "health") {
        return bad("health stays open (liveness and readiness probes); it cannot be restricted");
      }
      const ApiGroup* group = nullptr;
      for (const auto& [n, g] : kGroups) {
        if (n == name) group = &g;
      }
      if (group == nullptr) {
        return bad(absl::StrCat("unknown API group ", Quote(name),
                                " (metadata, inference, shared-memory, model-config, "
                                "model-repository, statistics, trace, logging)"));
      }
      auto& rule = out.rules_[static_cast<size_t>(*group)];
      if (rule.has_value()) {
        return bad(absl::StrCat("API group '", name, "' is restricted twice"));
      }
      rule = Rule{absl::StrCat(header_prefix, key), value};
    }
  }
  return out;
}

bool Restrictions::any() const {
  for (const auto& r : rules_) {
    if (r.has_value()) return true;
  }
  return false;
}

absl::Status Restrictions::Refused(const std::string& header) {
  return absl::PermissionDeniedError(
      absl::StrCat("This API is restricted, expecting header '", header, "'"));
}

}  // namespace hgpipe::server
