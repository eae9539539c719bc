#include "server/mapping_fault_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace hgpipe::server {
namespace {

// The table the signal handler reads: lock-free atomics only (a handler
// may not take locks). A slot is claimed with `used`, published by setting
// `end` last and retired by clearing `end` first.
struct Slot {
  std::atomic<bool> used{false};
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<bool> faulted{false};
};
Slot slots[FaultGuard::kCapacity];
static_assert(std::atomic<uintptr_t>::is_always_lock_free);
static_assert(std::atomic<bool>::is_always_lock_free);

uintptr_t page_bytes = 4096;
struct sigaction previous;  // the SIGBUS action before ours

void OnSigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : slots) {
    const uintptr_t end = s.end.load(std::memory_order_acquire);
    if (end == 0) continue;
    const uintptr_t begin = s.begin.load(std::memory_order_relaxed);
    if (at < begin || at >= end) continue;
    // Zero pages from the faulting one to the mapping's end: the access
    // completes and later ones cannot fault again.
    const uintptr_t from = at & ~(page_bytes - 1);
    void* r = mmap(reinterpret_cast<void*>(from), end - from, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r != MAP_FAILED) {
      s.faulted.store(true, std::memory_order_release);
      return;
    }
    break;
  }
  // Not a guarded mapping: what would have happened without us.
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction != nullptr) {
      previous.sa_sigaction(sig, info, context);
      return;
    }
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
    return;
  }
  // Default: returning re-runs the access, which faults again and ends the
  // process with SIGBUS.
  signal(SIGBUS, SIG_DFL);
}

absl::Status InstallOnce() {
  static std::once_flag once;
  static int error = 0;
  std::call_once(once, [] {
    page_bytes = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    struct sigaction a;
    std::memset(&a, 0, sizeof(a));
    a.sa_sigaction = OnSigbus;
    a.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&a.sa_mask);
    if (sigaction(SIGBUS, &a, &previous) != 0) error = errno;
  });
  if (error != 0) {
    return absl::InternalError(absl::StrCat("cannot install the SIGBUS handler for shared memory: ",
                                            std::strerror(error)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FaultGuard>> FaultGuard::Create(void* addr, size_t bytes) {
  if (absl::Status s = InstallOnce(); !s.ok()) return s;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(addr);
  // The kernel maps whole pages.
  const uintptr_t end = (begin + bytes + page_bytes - 1) & ~(page_bytes - 1);
  for (size_t i = 0; i < kCapacity; ++i) {
    if (slots[i].used.exchange(true, std::memory_order_acq_rel)) continue;
    slots[i].faulted.store(false, std::memory_order_relaxed);
    slots[i].begin.store(begin, std::memory_order_relaxed);
    slots[i].end.store(end, std::memory_order_release);
    return std::unique_ptr<FaultGuard>(new FaultGuard(i));
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("more than ", kCapacity, " shared memory mappings at once"));
}

FaultGuard::~FaultGuard() {
  Slot& s = slots[slot_];
  s.end.store(0, std::memory_order_release);
  s.begin.store(0, std::memory_order_relaxed);
  s.used.store(false, std::memory_order_release);
}

bool FaultGuard::faulted() const { return slots[slot_].faulted.load(std::memory_order_acquire); }

}  // namespace hgpipe::server
