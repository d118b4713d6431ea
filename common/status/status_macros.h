// Status propagation macros. Abseil 20220623 ships none, so these are prefixed
// to never clash with glog's or a later Abseil's.
#ifndef CMDISTILL_COMMON_STATUS_STATUS_MACROS_H_
#define CMDISTILL_COMMON_STATUS_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if
// not OK.
#define CMDISTILL_RETURN_IF_ERROR(expr)                     \
  do {                                                      \
    ::absl::Status cmdistill_status_macro_status_ = (expr); \
    if (!cmdistill_status_macro_status_.ok()) {             \
      return cmdistill_status_macro_status_;                \
    }                                                       \
  } while (false)

// CMDISTILL_RETURN_IF_ERROR, with the context (absl::StrCat's arguments)
// prepended to the message: "context: message" (Annotate, below).
#define CMDISTILL_RETURN_IF_ERROR_ANNOTATED(expr, ...)             \
  do {                                                             \
    ::absl::Status cmdistill_status_macro_status_ = (expr);        \
    if (!cmdistill_status_macro_status_.ok()) {                    \
      return ::cmdistill::Annotate(cmdistill_status_macro_status_, \
                                   ::absl::StrCat(__VA_ARGS__));   \
    }                                                              \
  } while (false)

#define CMDISTILL_STATUS_CONCAT_INNER_(a, b) a##b
#define CMDISTILL_STATUS_CONCAT_(a, b) CMDISTILL_STATUS_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs`, which may be a declaration (`auto x`,
// `const Foo& y`) or an lvalue.
#define CMDISTILL_ASSIGN_OR_RETURN(lhs, rexpr) \
  CMDISTILL_ASSIGN_OR_RETURN_IMPL_(            \
      CMDISTILL_STATUS_CONCAT_(cmdistill_statusor_, __LINE__), lhs, rexpr)

#define CMDISTILL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                     \
  if (!statusor.ok()) {                                        \
    return std::move(statusor).status();                       \
  }                                                            \
  lhs = std::move(statusor).value()

namespace cmdistill {

// Returns `status` with `context` prepended to its message ("context:
// message"); OK stays OK.
inline absl::Status Annotate(const absl::Status& status,
                             absl::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(),
                   absl::StrCat(context, ": ", status.message()));
  // Payloads (e.g. a trajectory violation's label) travel with the status.
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& p) {
    out.SetPayload(url, p);
  });
  return out;
}

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_STATUS_STATUS_MACROS_H_
