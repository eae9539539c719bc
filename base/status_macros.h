// Small helpers for absl::Status plumbing. Abseil 20220623 (Debian bookworm)
// has no public RETURN_IF_ERROR / ASSIGN_OR_RETURN, so they live here, once.
#ifndef HGPIPE_BASE_STATUS_MACROS_H_
#define HGPIPE_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HGPIPE_CONCAT_INNER_(a, b) a##b
#define HGPIPE_CONCAT_(a, b) HGPIPE_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status hgpipe_status_ = (expr);          \
    if (!hgpipe_status_.ok()) return hgpipe_status_; \
  } while (0)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(HGPIPE_CONCAT_(hgpipe_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // HGPIPE_BASE_STATUS_MACROS_H_
