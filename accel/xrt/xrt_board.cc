#include "accel/xrt/xrt_board.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "accel/xrt/bitstream_file.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "experimental/xrt_system.h"
#include "experimental/xrt_xclbin.h"
#include "xrt/xrt_bo.h"
#include "xrt/xrt_device.h"
#include "xrt/xrt_kernel.h"

namespace hgpipe::accel {
namespace {

// The kernel contract's argument indices (docs/kernel-contract.md).
constexpr int kArgIn = 0;
constexpr int kArgOut = 1;
constexpr int kArgImages = 2;
constexpr int kNumArgs = 3;

// How long one xrt::run::wait call may block before we look at the
// deadline again; the wait itself sleeps inside XRT.
constexpr std::chrono::milliseconds kWaitSlice{1000};

constexpr size_t kPageBytes = 4096;
size_t RoundUpToPage(size_t n) { return (n + kPageBytes - 1) / kPageBytes * kPageBytes; }

bool IsFinal(ert_cmd_state s) {
  switch (s) {
    case ERT_CMD_STATE_NEW:
    case ERT_CMD_STATE_QUEUED:
    case ERT_CMD_STATE_RUNNING:
    case ERT_CMD_STATE_SUBMITTED: return false;
    default: return true;
  }
}

std::string StateName(ert_cmd_state s) {
  switch (s) {
    case ERT_CMD_STATE_NEW: return "NEW";
    case ERT_CMD_STATE_QUEUED: return "QUEUED";
    case ERT_CMD_STATE_RUNNING: return "RUNNING";
    case ERT_CMD_STATE_COMPLETED: return "COMPLETED";
    case ERT_CMD_STATE_ERROR: return "ERROR";
    case ERT_CMD_STATE_ABORT: return "ABORT";
    case ERT_CMD_STATE_SUBMITTED: return "SUBMITTED";
    case ERT_CMD_STATE_TIMEOUT: return "TIMEOUT";
    case ERT_CMD_STATE_NORESPONSE: return "NORESPONSE";
    default: return absl::StrCat("state ", static_cast<int>(s));
  }
}

// XRT reports sensors as JSON text. The fields needed here are flat string
// members of flat objects, so a small scanner is enough: the string value
// of "key" in `object`, or nullopt.
std::optional<std::string> JsonStringField(absl::string_view object, absl::string_view key) {
  const std::string quoted = absl::StrCat("\"", key, "\"");
  size_t pos = object.find(quoted);
  if (pos == absl::string_view::npos) return std::nullopt;
  pos = object.find(':', pos + quoted.size());
  if (pos == absl::string_view::npos) return std::nullopt;
  pos = object.find('"', pos);
  if (pos == absl::string_view::npos) return std::nullopt;
  const size_t end = object.find('"', pos + 1);
  if (end == absl::string_view::npos) return std::nullopt;
  return std::string(object.substr(pos + 1, end - pos - 1));
}

// The FPGA die's temperature from device::info::thermal, when present.
std::optional<double> FpgaTemperature(absl::string_view json) {
  size_t pos = 0;
  while ((pos = json.find("\"location_id\"", pos)) != absl::string_view::npos) {
    const size_t begin = json.rfind('{', pos);
    const size_t end = json.find('}', pos);
    if (begin == absl::string_view::npos || end == absl::string_view::npos) {
      break;
    }
    const absl::string_view obj = json.substr(begin, end - begin);
    pos = end;
    if (JsonStringField(obj, "location_id") != "fpga0") continue;
    if (JsonStringField(obj, "is_present") != "true") return std::nullopt;
    double celsius;
    std::optional<std::string> t = JsonStringField(obj, "temp_C");
    if (t && absl::SimpleAtod(*t, &celsius)) return celsius;
    return std::nullopt;
  }
  return std::nullopt;
}

// The card's power from device::info::electrical, when known ("N/A" not).
std::optional<double> PowerWatts(absl::string_view json) {
  std::optional<std::string> w = JsonStringField(json, "power_consumption_watts");
  double watts;
  if (w && absl::SimpleAtod(*w, &watts)) return watts;
  return std::nullopt;
}

template <typename F>
auto Optional(F f) -> std::optional<decltype(f())> {
  try {
    return f();
  } catch (const std::exception&) {
    return std::nullopt;  // most queries are unsupported somewhere
  }
}

class XrtBoard final : public Board {
 public:
  XrtBoard(const XrtBoardOptions& options, std::string name)
      : device_spec_(options.device),
        num_slots_(options.num_slots),
        max_images_per_run_(options.max_images_per_run),
        run_timeout_(options.run_timeout),
        test_fault_after_runs_(options.test_fault_after_runs),
        xclbin_path_(options.xclbin_path) {
    info_.name = std::move(name);
    info_.kind = "xrt";
    slots_.resize(num_slots_);
  }

  ~XrtBoard() override {
    // The operation in progress finishes; queued ones are cancelled.
    {
      hgpipe::MutexLock l(&mu_);
      ops_stop_ = true;
    }
    if (ops_thread_.joinable()) ops_thread_.join();
    {
      hgpipe::MutexLock l(&mu_);
      stop_ = true;
    }
    if (completion_.joinable()) completion_.join();
    // XRT objects go in reverse order of creation: runs and buffers before
    // the kernel (Release) before the device (member order).
    Release();
  }

  XrtBoard(const XrtBoard&) = delete;
  XrtBoard& operator=(const XrtBoard&) = delete;

  // Opens the device, loads the bitstream, allocates the pool; then starts
  // the completion and operations threads.
  absl::Status Init(const BitstreamFile& file);

  const BoardInfo& info() const override { return info_; }
  const BitstreamManifest& manifest() const override { return manifest_; }
  int num_slots() const override { return num_slots_; }
  uint32_t max_images_per_run() const override { return max_images_per_run_; }
  RunSlotBuffers slot(int index) override {
    Slot& s = slots_.at(index);
    return {absl::MakeSpan(s.in_map, s.in_size), absl::MakeConstSpan(s.out_map, s.out_words)};
  }
  void Submit(int index, uint32_t n, DoneCallback done) override;
  absl::Status Health() const override {
    hgpipe::MutexLock l(&mu_);
    if (!failure_.ok()) return absl::UnavailableError(failure_.message());
    if (ops_pending_ > 0 || !programmed_) return NotProgrammedLocked();
    return absl::OkStatus();
  }
  void Program(std::shared_ptr<const Bitstream> bitstream, DoneCallback done) override;
  void Reset(DoneCallback done) override;

 private:
  struct Slot {
    xrt::bo in;
    xrt::bo out;
    int8_t* in_map = nullptr;
    uint32_t* out_map = nullptr;
    size_t in_size = 0;
    size_t out_words = 0;
    xrt::run run;  // bound to in and out; n_images set per Submit
  };
  struct Pending {
    int slot = -1;
    uint32_t n = 0;
    DoneCallback done;
    absl::Status status;     // not OK: fails without waiting
    bool claimed = false;    // holds slot_busy_[slot]
    bool started = false;    // the run was started on the device
    uint64_t seq = 0;        // 1, 2, ... in submission order
    uint64_t reset_gen = 0;  // reset_gen_ when submitted
  };
  // A Program or Reset, run on the operations thread in call order.
  struct Op {
    enum class Kind { kProgram, kReset, kRefused } kind = Kind::kRefused;
    std::shared_ptr<const Bitstream> bitstream;
    DoneCallback done;
    absl::Status refused;  // kRefused: the answer
  };

  // "board <name>: <what>: <XRT's message>", recorded as the board's
  // failure if it is the first. Returns the run's status.
  absl::Status Fail(absl::StatusCode code, absl::string_view what) ABSL_LOCKS_EXCLUDED(mu_);
  std::string Where(int slot, uint32_t n) const {
    return absl::StrCat("run of ", n, " images from slot ", slot);
  }
  absl::Status NotProgrammedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a Reset came after the run was submitted.
  bool AbortRequested(const Pending& p) ABSL_LOCKS_EXCLUDED(mu_) {
    hgpipe::MutexLock l(&mu_);
    return p.reset_gen != reset_gen_;
  }
  // Waits for a started run, then brings its output to the host.
  absl::Status FinishRun(const Pending& p) ABSL_LOCKS_EXCLUDED(mu_);
  // Aborts a run on the device if it is still going; returns ABORTED.
  absl::Status AbortRun(const Pending& p) ABSL_LOCKS_EXCLUDED(mu_);
  void CompletionLoop();
  void OpsLoop();

  // Device work, on the operations thread (and Init), with no run in
  // flight: the completion thread is idle and Submit refuses runs.
  absl::Status OpenDevice();
  absl::Status Load(const BitstreamFile& file);
  void Release();
  absl::Status DoProgram(const Bitstream& bitstream) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status DoReset() ABSL_LOCKS_EXCLUDED(mu_);
  // Returns once every run submitted so far has been answered (callback
  // returned).
  void WaitUntilIdle() ABSL_LOCKS_EXCLUDED(mu_, submit_mu_);

  // Constant after construction.
  const std::string device_spec_;
  const int num_slots_;
  const uint32_t max_images_per_run_;
  const absl::Duration run_timeout_;
  const std::optional<uint64_t> test_fault_after_runs_;
  BoardInfo info_;

  // Written by Init and by the operations thread while no run is in flight
  // and Submit refuses runs (ops_pending_ > 0); read by runs, and by callers
  // outside Program (Board's contract).
  std::string xclbin_path_;
  BitstreamManifest manifest_;
  xrt::device device_;
  xrt::kernel kernel_;
  std::vector<Slot> slots_;

  // Held while a run is started and queued, so runs wait in the completion
  // queue in the order they were started on the device.
  hgpipe::Mutex submit_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  // State below is protected by mu_.
  mutable hgpipe::Mutex mu_;
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool in_completion_ ABSL_GUARDED_BY(mu_) = false;  // a run is being answered
  std::vector<bool> slot_busy_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // first failure; OK: healthy
  uint64_t runs_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool programmed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status program_error_ ABSL_GUARDED_BY(mu_);  // the last Program's
  uint64_t reset_gen_ ABSL_GUARDED_BY(mu_) = 0;      // Reset calls so far
  int ops_pending_ ABSL_GUARDED_BY(mu_) = 0;         // Program/Reset queued or running
  std::deque<Op> ops_ ABSL_GUARDED_BY(mu_);
  bool ops_stop_ ABSL_GUARDED_BY(mu_) = false;

  std::thread completion_;
  std::thread ops_thread_;
};

absl::Status XrtBoard::OpenDevice() {
  try {
    unsigned index;
    if (absl::SimpleAtoi(device_spec_, &index)) {
      device_ = xrt::device(index);
    } else {
      device_ = xrt::device(device_spec_);
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("board ", info_.name, ": opening XRT device ",
                                               device_spec_, " (xclbin ", xclbin_path_,
                                               "): ", e.what()));
  }
  return absl::OkStatus();
}

void XrtBoard::Release() {
  for (Slot& s : slots_) s = Slot{};
  kernel_ = xrt::kernel();
}

absl::Status XrtBoard::Load(const BitstreamFile& file) {
  xclbin_path_ = file.xclbin_path;
  const std::string& kernel_name = file.manifest.kernel;
  const DeviceGeometry& g = file.manifest.manifest.geometry;
  std::string stage;
  absl::Status status;
  try {
    stage = "reading the xclbin";
    const xrt::xclbin xclbin(std::vector<char>(file.bytes.begin(), file.bytes.end()));
    const xrt::xclbin::kernel xk = xclbin.get_kernel(kernel_name);
    if (!xk) {
      return absl::InvalidArgumentError(absl::StrCat("board ", info_.name, ": ", xclbin_path_,
                                                     ": unknown kernel: no kernel \"", kernel_name,
                                                     "\" in its EMBEDDED_METADATA"));
    }
    // The contract, as XRT reads the metadata (docs/kernel-contract.md).
    auto contract_error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("board ", info_.name, ": ", xclbin_path_, ": kernel ", kernel_name,
                       " breaks the kernel contract (docs/kernel-contract.md): ", what));
    };
    if (xk.get_num_args() != kNumArgs) {
      return contract_error(absl::StrCat("it has ", xk.get_num_args(),
                                         " arguments, the contract 3 (in, "
                                         "out, n_images)"));
    }
    for (int i : {kArgIn, kArgOut}) {
      if (xk.get_arg(i).get_mems().empty()) {
        return contract_error(
            absl::StrCat("argument ", i, " (", xk.get_arg(i).get_name(),
                         ") must be a global pointer connected to device memory"));
      }
    }
    if (!xk.get_arg(kArgImages).get_mems().empty() ||
        xk.get_arg(kArgImages).get_size() != sizeof(uint32_t)) {
      return contract_error(absl::StrCat("argument 2 (", xk.get_arg(kArgImages).get_name(),
                                         ") must be the 4-byte scalar n_images"));
    }

    stage = "loading the xclbin";
    device_.load_xclbin(xclbin);

    stage = absl::StrCat("opening kernel ", kernel_name);
    // By the uuid the file says: XRT refuses it ("xclbin id mismatch") if
    // the device does not hold that xclbin.
    kernel_ = xrt::kernel(device_, xrt::uuid(file.uuid.data()), kernel_name);

    stage = "allocating the slot buffers";
    const size_t in_bytes = g.input_bytes() * max_images_per_run_;
    const size_t out_bytes = g.output_bytes() * max_images_per_run_;
    const auto in_group = kernel_.group_id(kArgIn);
    const auto out_group = kernel_.group_id(kArgOut);
    for (Slot& s : slots_) {
      // Whole pages: XRT allocates host backing with aligned_alloc(4096, size),
      // which requires a size that is a multiple of the alignment.
      s.in = xrt::bo(device_, RoundUpToPage(in_bytes), in_group);
      s.out = xrt::bo(device_, RoundUpToPage(out_bytes), out_group);
      s.in_map = s.in.map<int8_t*>();
      s.out_map = s.out.map<uint32_t*>();
      s.in_size = in_bytes;
      s.out_words = g.output_words() * max_images_per_run_;
      // Outputs start at zero, as on the emulated board; under the no-op
      // device they stay what the host left.
      std::memset(s.out_map, 0, out_bytes);
      std::memset(s.in_map, 0, in_bytes);
      s.run = xrt::run(kernel_);
      s.run.set_arg(kArgIn, s.in);
      s.run.set_arg(kArgOut, s.out);
    }
  } catch (const std::exception& e) {
    Release();
    return absl::UnavailableError(absl::StrCat("board ", info_.name, ": ", stage, " (xclbin ",
                                               xclbin_path_, "): ", e.what()));
  }
  manifest_ = file.manifest.manifest;
  return absl::OkStatus();
}

absl::Status XrtBoard::Init(const BitstreamFile& file) {
  RETURN_IF_ERROR(OpenDevice());
  RETURN_IF_ERROR(Load(file));

  // Descriptive information: whatever XRT can tell (most queries throw on
  // the no-op device and on some platforms).
  info_.device =
      Optional([&] { return device_.get_info<xrt::info::device::bdf>(); }).value_or(device_spec_);
  if (auto t = Optional([&] { return device_.get_info<xrt::info::device::thermal>(); })) {
    info_.temperature_celsius = FpgaTemperature(*t);
  }
  if (auto e = Optional([&] { return device_.get_info<xrt::info::device::electrical>(); })) {
    info_.power_watts = PowerWatts(*e);
  }

  {
    hgpipe::MutexLock l(&mu_);
    slot_busy_.assign(slots_.size(), false);
    programmed_ = true;
  }
  completion_ = std::thread([this] {
    NameThisThread(absl::StrCat(info_.name, "-done"));
    CompletionLoop();
  });
  ops_thread_ = std::thread([this] {
    NameThisThread(absl::StrCat(info_.name, "-ops"));
    OpsLoop();
  });
  return absl::OkStatus();
}

absl::Status XrtBoard::Fail(absl::StatusCode code, absl::string_view what) {
  absl::Status s(code, absl::StrCat("board ", info_.name, ": ", what));
  hgpipe::MutexLock l(&mu_);
  if (failure_.ok()) failure_ = s;
  return s;
}

absl::Status XrtBoard::NotProgrammedLocked() const {
  const std::string what = absl::StrCat("board ", info_.name, ": not programmed");
  if (ops_pending_ > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " (a Program or Reset is in progress)"));
  }
  if (!program_error_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " (the last Program failed: ", program_error_.message(), ")"));
  }
  return absl::FailedPreconditionError(what);
}

void XrtBoard::Submit(int index, uint32_t n, DoneCallback done) {
  Pending p;
  p.slot = index;
  p.n = n;
  p.done = std::move(done);
  hgpipe::MutexLock sl(&submit_mu_);
  if (index < 0 || index >= num_slots_ || n == 0 || n > max_images_per_run_) {
    p.status = absl::InvalidArgumentError(
        absl::StrCat("board ", info_.name, ": bad run (slot ", index, ", ", n, " images; ",
                     num_slots_, " slots of ", max_images_per_run_, " images)"));
  } else {
    hgpipe::MutexLock l(&mu_);
    if (ops_pending_ > 0 || !programmed_) {
      p.status = NotProgrammedLocked();
    } else if (!failure_.ok()) {
      p.status = absl::UnavailableError(absl::StrCat(failure_.message(), " (run refused)"));
    } else if (slot_busy_[index]) {
      p.status = absl::FailedPreconditionError(
          absl::StrCat("board ", info_.name, ": slot ", index, " is still in flight"));
    } else {
      slot_busy_[index] = true;
      p.claimed = true;
      p.seq = ++runs_;
      p.reset_gen = reset_gen_;
    }
  }
  if (p.status.ok()) {
    Slot& s = slots_[index];
    try {
      s.in.sync(XCL_BO_SYNC_BO_TO_DEVICE, manifest_.geometry.input_bytes() * n, 0);
      // set_arg on an idle run (never update_arg: see xrt-noop notes).
      s.run.set_arg(kArgImages, n);
      s.run.start();
      p.started = true;
    } catch (const std::exception& e) {
      p.status = Fail(absl::StatusCode::kUnavailable,
                      absl::StrCat("starting a ", Where(index, n), " failed: ", e.what()));
    }
  }
  hgpipe::MutexLock l(&mu_);
  pending_.push_back(std::move(p));
}

absl::Status XrtBoard::AbortRun(const Pending& p) {
  Slot& s = slots_[p.slot];
  if (p.started) {
    try {
      if (!IsFinal(s.run.state())) s.run.abort();
    } catch (const std::exception&) {
      // The device is about to be reset anyway.
    }
  }
  return absl::AbortedError(
      absl::StrCat("board ", info_.name, ": ", Where(p.slot, p.n), " aborted by reset"));
}

absl::Status XrtBoard::FinishRun(const Pending& p) {
  Slot& s = slots_[p.slot];
  bool failed_before;
  {
    hgpipe::MutexLock l(&mu_);
    failed_before = !failure_.ok();
  }
  try {
    // After a failure the device may be gone: do not wait long for it.
    const absl::Time deadline = absl::Now() + (failed_before ? absl::Seconds(1) : run_timeout_);
    ert_cmd_state state;
    for (;;) {
      const absl::Duration left = std::max(deadline - absl::Now(), absl::Milliseconds(1));
      const auto slice =
          std::min(kWaitSlice, std::chrono::milliseconds(absl::ToInt64Milliseconds(left) + 1));
      state = s.run.wait(slice);
      // TIMEOUT is both "the wait timed out" and a final state set by the
      // scheduler: the run's own state tells which.
      if (state == ERT_CMD_STATE_TIMEOUT) state = s.run.state();
      if (IsFinal(state) || absl::Now() >= deadline) break;
      // A Reset called meanwhile ends the wait within one slice.
      if (AbortRequested(p)) return AbortRun(p);
    }
    if (AbortRequested(p)) return AbortRun(p);
    if (!IsFinal(state)) {
      return Fail(
          absl::StatusCode::kDeadlineExceeded,
          absl::StrCat(Where(p.slot, p.n), " did not finish within ",
                       absl::FormatDuration(run_timeout_), " (state ", StateName(state), ")"));
    }
    if (state != ERT_CMD_STATE_COMPLETED) {
      return Fail(absl::StatusCode::kUnavailable,
                  absl::StrCat(Where(p.slot, p.n), " ended in state ", StateName(state)));
    }
    if (test_fault_after_runs_ && p.seq > *test_fault_after_runs_) {
      // Test-only fault (XrtBoardOptions::test_fault_after_runs): a read
      // one byte past the end of the buffer object, which XRT refuses.
      char byte;
      s.out.read(&byte, 1, s.out.size());
    }
    s.out.sync(XCL_BO_SYNC_BO_FROM_DEVICE, manifest_.geometry.output_bytes() * p.n, 0);
  } catch (const std::exception& e) {
    return Fail(absl::StatusCode::kUnavailable,
                absl::StrCat("completing a ", Where(p.slot, p.n), " failed: ", e.what()));
  }
  hgpipe::MutexLock l(&mu_);
  if (!failure_.ok()) {
    // Another run failed meanwhile: outputs of this board are not trusted.
    return absl::UnavailableError(absl::StrCat(failure_.message(), " (run discarded)"));
  }
  return absl::OkStatus();
}

void XrtBoard::CompletionLoop() {
  for (;;) {
    Pending p;
    bool abort;
    {
      hgpipe::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](XrtBoard* b)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) { return b->stop_ || !b->pending_.empty(); },
          this));
      if (pending_.empty()) return;  // stop_ and nothing left
      p = std::move(pending_.front());
      pending_.pop_front();
      in_completion_ = true;
      // A run in flight when Reset was called is answered ABORTED.
      abort = p.claimed && p.reset_gen != reset_gen_;
    }
    absl::Status status = p.status;
    if (abort) {
      status = AbortRun(p);
    } else if (p.started) {
      status = FinishRun(p);
    }
    if (p.claimed) {
      hgpipe::MutexLock l(&mu_);
      slot_busy_[p.slot] = false;
    }
    DoneCallback done = std::move(p.done);
    done(std::move(status));
    hgpipe::MutexLock l(&mu_);
    in_completion_ = false;
  }
}

void XrtBoard::Program(std::shared_ptr<const Bitstream> bitstream, DoneCallback done) {
  Op op;
  op.done = std::move(done);
  hgpipe::MutexLock l(&mu_);
  if (bitstream == nullptr || bitstream->xclbin_path.empty()) {
    op.refused =
        absl::InvalidArgumentError(absl::StrCat("board ", info_.name,
                                                ": cannot program: no bitstream or no xclbin "
                                                "path in it"));
  } else if (const int busy =
                 static_cast<int>(std::count(slot_busy_.begin(), slot_busy_.end(), true));
             busy > 0) {
    op.refused = absl::FailedPreconditionError(
        absl::StrCat("board ", info_.name, ": cannot program with ", busy, " runs in flight"));
  } else {
    op.kind = Op::Kind::kProgram;
    op.bitstream = std::move(bitstream);
    ++ops_pending_;
  }
  ops_.push_back(std::move(op));
}

void XrtBoard::Reset(DoneCallback done) {
  Op op;
  op.kind = Op::Kind::kReset;
  op.done = std::move(done);
  hgpipe::MutexLock l(&mu_);
  ++reset_gen_;  // runs submitted before now are aborted
  ++ops_pending_;
  ops_.push_back(std::move(op));
}

void XrtBoard::OpsLoop() {
  for (;;) {
    Op op;
    bool cancel;
    {
      hgpipe::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](XrtBoard* b)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) { return b->ops_stop_ || !b->ops_.empty(); },
          this));
      if (ops_.empty()) return;  // ops_stop_ and nothing left
      op = std::move(ops_.front());
      ops_.pop_front();
      cancel = ops_stop_;
    }
    absl::Status status;
    if (op.kind == Op::Kind::kRefused) {
      status = std::move(op.refused);
    } else {
      if (cancel) {
        status = absl::CancelledError(absl::StrCat("board ", info_.name, ": board destroyed"));
      } else if (op.kind == Op::Kind::kProgram) {
        status = DoProgram(*op.bitstream);
      } else {
        status = DoReset();
      }
      hgpipe::MutexLock l(&mu_);
      --ops_pending_;
    }
    op.done(std::move(status));
  }
}

void XrtBoard::WaitUntilIdle() {
  // A Submit that passed its checks before the operation was called holds
  // submit_mu_ until its run is queued: after this, every such run is in
  // pending_, and later Submits are refused (ops_pending_ > 0).
  { hgpipe::MutexLock sl(&submit_mu_); }
  hgpipe::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](XrtBoard* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) {
        return b->pending_.empty() && !b->in_completion_;
      },
      this));
}

absl::Status XrtBoard::DoProgram(const Bitstream& bitstream) {
  WaitUntilIdle();
  {
    hgpipe::MutexLock l(&mu_);
    programmed_ = false;
  }
  absl::Status status;
  absl::StatusOr<BitstreamFile> file = ReadBitstreamFile(bitstream.xclbin_path);
  if (!file.ok()) {
    status = absl::Status(file.status().code(),
                          absl::StrCat("board ", info_.name, ": ", file.status().message()));
  } else if (const uint32_t limit = file->manifest.max_images_per_run;
             limit != 0 && max_images_per_run_ > limit) {
    status = absl::InvalidArgumentError(
        absl::StrCat("board ", info_.name, ": max_images_per_run ", max_images_per_run_,
                     " exceeds the limit of ", limit, " of the bitstream ", file->manifest_source));
  } else if (const DeviceGeometry& want = bitstream.manifest.geometry,
             &have = file->manifest.manifest.geometry;
             want.tokens != have.tokens || want.token_values != have.token_values ||
             want.classes != have.classes) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "board ", info_.name, ": cannot program: the manifest given for ", bitstream.manifest.name,
        " and ", file->manifest_source, " disagree on the geometry"));
  } else {
    Release();
    if (!device_) status = OpenDevice();
    if (status.ok()) status = Load(*file);
  }
  hgpipe::MutexLock l(&mu_);
  if (status.ok()) {
    programmed_ = true;
    failure_ = absl::OkStatus();
    program_error_ = absl::OkStatus();
  } else {
    program_error_ = status;
  }
  return status;
}

absl::Status XrtBoard::DoReset() {
  WaitUntilIdle();  // every run in flight has been answered ABORTED
  Release();
  device_ = xrt::device();  // XRT closes the device with its last handle
  absl::Status status = OpenDevice();
  hgpipe::MutexLock l(&mu_);
  programmed_ = false;
  program_error_ = absl::OkStatus();
  failure_ = status;
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Board>> OpenXrtBoard(const XrtBoardOptions& options) {
  const std::string name =
      options.name.empty() ? absl::StrCat("xrt", options.device) : options.name;
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("board ", name, ": ", what));
  };
  if (options.device.empty()) return invalid("no device (index or PCIe BDF)");
  if (options.xclbin_path.empty()) return invalid("no xclbin path");
  if (options.max_images_per_run == 0 || options.num_slots <= 0) {
    return invalid("max_images_per_run and num_slots must be > 0");
  }
  if (options.run_timeout <= absl::ZeroDuration()) {
    return invalid("run_timeout must be > 0");
  }
  absl::StatusOr<BitstreamFile> file = ReadBitstreamFile(options.xclbin_path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("board ", name, ": ", file.status().message()));
  }
  const uint32_t limit = file->manifest.max_images_per_run;
  if (limit != 0 && options.max_images_per_run > limit) {
    return invalid(absl::StrCat("max_images_per_run ", options.max_images_per_run,
                                " exceeds the bitstream's limit of ", limit, " (",
                                file->manifest_source, ")"));
  }
  auto board = std::make_unique<XrtBoard>(options, name);
  RETURN_IF_ERROR(board->Init(*file));
  return std::unique_ptr<Board>(std::move(board));
}

absl::StatusOr<std::vector<std::string>> ListXrtDevices() {
  try {
    const unsigned n = xrt::system::enumerate_devices();
    std::vector<std::string> out;
    for (unsigned i = 0; i < n; ++i) out.push_back(absl::StrCat(i));
    return out;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("XRT cannot enumerate devices: ", e.what()));
  }
}

}  // namespace hgpipe::accel
