// Restricted API groups, as Triton's --grpc-restricted-protocol and
// --http-restricted-api: a group of calls is served only to callers that send
// a given header with a given value.
//
// Flag value (repeatable, one key per group): GROUPS:KEY=VALUE, GROUPS a
// comma-separated list of metadata, inference, shared-memory, model-config,
// model-repository, statistics, trace, logging. `health` (live, ready, model
// ready, grpc.health.v1) is never restricted, so that probes and load
// balancers keep working; naming it is an error.
//
// Header names: gRPC calls carry metadata "triton-grpc-protocol-KEY" (as
// Triton's gRPC server prefixes it); HTTP requests carry header KEY. A
// refused call is PERMISSION_DENIED (gRPC; Triton answers UNAVAILABLE) or
// HTTP 403, with a message naming the header expected.
//
// Thread safety: immutable after parsing.
#ifndef HGPIPE_SERVER_RESTRICTIONS_H_
#define HGPIPE_SERVER_RESTRICTIONS_H_

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hgpipe::server {

enum class ApiGroup {
  kMetadata,
  kInference,
  kSharedMemory,
  kModelConfig,
  kModelRepository,
  kStatistics,
  kTrace,
  kLogging,
  kHealth,  // never restricted
};

// The gRPC metadata prefix of a restriction's key (Triton's).
inline constexpr char kGrpcRestrictedHeaderPrefix[] = "triton-grpc-protocol-";

class Restrictions {
 public:
  // `flags`: the values of the flag, each GROUPS:KEY=VALUE; `header_prefix`
  // goes before each KEY ("" for HTTP, kGrpcRestrictedHeaderPrefix for
  // gRPC). Header names are lower-cased (HTTP/2 and HTTP/1 compare them
  // case-insensitively). InvalidArgument naming `flag_name` and the
  // offending value for bad syntax, an unknown group, `health`, or a group
  // named twice.
  static absl::StatusOr<Restrictions> Parse(absl::string_view flag_name,
                                            const std::vector<std::string>& flags,
                                            absl::string_view header_prefix);

  // OK if `group` is open, or if `header(name)` (the caller's value of a
  // header, nullopt when absent) holds the expected value; else
  // PermissionDenied naming the header.
  template <typename HeaderLookup>
  absl::Status Check(ApiGroup group, const HeaderLookup& header) const {
    const auto& r = rules_[static_cast<size_t>(group)];
    if (!r.has_value()) return absl::OkStatus();
    const std::optional<absl::string_view> v = header(r->header);
    if (v.has_value() && *v == r->value) return absl::OkStatus();
    return Refused(r->header);
  }

  bool any() const;

 private:
  struct Rule {
    std::string header;  // lower case
    std::string value;
  };
  static absl::Status Refused(const std::string& header);
  std::array<std::optional<Rule>, 9> rules_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_RESTRICTIONS_H_
