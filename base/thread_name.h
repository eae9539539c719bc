// Thread names as tools show them (top -H, ps -L, perf, gdb,
// /proc/PID/task/TID/comm), so that a thread's CPU can be told apart: the
// clock's timer thread from a fill thread from a board's.
#ifndef HGPIPE_BASE_THREAD_NAME_H_
#define HGPIPE_BASE_THREAD_NAME_H_

#include <string>

#include "absl/strings/string_view.h"

namespace hgpipe {

// Names the calling thread. Linux keeps 15 bytes: a longer name is cut.
void NameThisThread(absl::string_view name);
// The calling thread's name (empty if it cannot be read).
std::string ThisThreadName();

}  // namespace hgpipe

#endif  // HGPIPE_BASE_THREAD_NAME_H_
