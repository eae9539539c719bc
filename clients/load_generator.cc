#include "clients/load_generator.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "accel/verify_digest.h"
#include "base/mutex.h"
#include "clients/client.h"
#include "clients/labelled_images.h"
#include "clients/shared_memory.h"
#include "clients/tensors.h"
#include "proto/grpc_service.pb.h"

namespace hgpipe::clients {
namespace {

constexpr char kModelInferMethod[] = "/inference.GRPCInferenceService/ModelInfer";
constexpr char kModelStreamInferMethod[] = "/inference.GRPCInferenceService/ModelStreamInfer";
// The request pool is cut down to stay within this much memory.
constexpr size_t kPoolBytesLimit = size_t{64} << 20;

// CPU time of this process so far, in user and kernel mode.
struct CpuTimes {
  double user = 0, system = 0;
};
CpuTimes CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return {u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6,
          u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6};
}

// What the load is made of, built before the clock starts.
struct PoolEntry {
  grpc::ByteBuffer request;       // serialized ModelInferRequest
  std::vector<int32_t> expected;  // verify: images x classes logits
  std::vector<uint8_t> labels;    // labelled images: one per image
};

// The requests, and with system shared memory the objects their tensors
// are in (entry r's images at r * request_bytes of `in`, its output at
// r * output_bytes of `out`), registered with the server until the pool goes.
struct Pool {
  std::vector<PoolEntry> entries;
  std::unique_ptr<SharedMemoryObject> in, out;
  size_t output_bytes = 0;
  std::unique_ptr<InferenceClient> registrar;  // set when regions are registered
  std::vector<std::string> regions;

  Pool() = default;
  Pool(Pool&&) = default;
  ~Pool() {
    for (const std::string& r : regions) (void)registrar->UnregisterSystemSharedMemory(r);
  }
};

struct ModelShape {
  std::string platform;
  std::string input_name;
  std::string output_name;
  ImageRequestOptions request_options;
  int64_t classes = kClasses;
  std::string input_datatype;
  std::vector<int64_t> input_shape;  // the metadata's, [-1, ...]
  // The model's variants (metadata `variants`) and their declared top-1
  // (`variant.NAME.top1_accuracy`; < 0 if not stated).
  std::map<std::string, double> declared_top1;
};

absl::StatusOr<ModelShape> DescribeModel(const LoadOptions& options) {
  absl::StatusOr<std::unique_ptr<InferenceClient>> client = InferenceClient::Create(options.target);
  if (!client.ok()) return client.status();
  absl::StatusOr<inference::ModelMetadataResponse> metadata =
      (*client)->ModelMetadata(options.model);
  if (!metadata.ok()) return metadata.status();
  if (metadata->inputs_size() < 1 || metadata->outputs_size() < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", options.model, "' has ", metadata->inputs_size(), " inputs and ",
                     metadata->outputs_size(),
                     " outputs; the load generator needs one image input and one output"));
  }
  const auto& input = metadata->inputs(0);
  const auto& output = metadata->outputs(0);
  const bool labelled = !options.images_path.empty();
  if (labelled && input.datatype() != "UINT8") {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", options.model, "' input '", input.name(), "' is ", input.datatype(),
        "; labelled images go as UINT8 pixels [N, height, width, 1] (input_format PIXELS)"));
  }
  if (!labelled && input.datatype() != "INT8") {
    return absl::FailedPreconditionError(absl::StrCat("model '", options.model, "' input '",
                                                      input.name(), "' is ", input.datatype(),
                                                      "; the load generator sends INT8 images"));
  }
  ModelShape shape;
  shape.platform = metadata->platform();
  shape.input_name = input.name();
  shape.output_name = output.name();
  shape.request_options.input_name = input.name();
  shape.request_options.output_name = output.name();
  shape.input_datatype = input.datatype();
  shape.input_shape.assign(input.shape().begin(), input.shape().end());
  if (auto it = metadata->parameters().find("variants"); it != metadata->parameters().end()) {
    for (absl::string_view name : absl::StrSplit(it->second.string_param(), ',')) {
      if (name.empty()) continue;
      double top1 = -1;
      auto a = metadata->parameters().find(absl::StrCat("variant.", name, ".top1_accuracy"));
      if (a != metadata->parameters().end()) top1 = a->second.double_param();
      shape.declared_top1[std::string(name)] = top1;
    }
  }
  // [N, tokens, token_values] with fixed inner dimensions is the model's own
  // geometry; anything else gets HG-PIPE's.
  if (input.shape_size() == 3 && input.shape(1) > 0 && input.shape(2) > 0) {
    shape.request_options.tokens = input.shape(1);
    shape.request_options.token_values = input.shape(2);
  }
  if (output.shape_size() == 2 && output.shape(1) > 0) {
    shape.classes = output.shape(1);
  }
  if (options.verify && shape.platform != kVerifyPlatform) {
    return absl::FailedPreconditionError(
        absl::StrCat("verification needs a model whose platform is '", kVerifyPlatform,
                     "'; model '", options.model, "' is '", shape.platform, "'"));
  }
  return shape;
}

absl::Status ValidateOptions(const LoadOptions& o) {
  if (o.images_per_request < 1) {
    return absl::InvalidArgumentError("images_per_request must be >= 1");
  }
  if (o.rate < 0 || !std::isfinite(o.rate)) {
    return absl::InvalidArgumentError("rate must be >= 0 requests/s");
  }
  if (o.rate == 0 && o.concurrency < 1) {
    return absl::InvalidArgumentError("concurrency must be >= 1");
  }
  if (o.rate > 0 && o.max_outstanding < 1) {
    return absl::InvalidArgumentError("max_outstanding must be >= 1");
  }
  if (o.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("duration must be > 0");
  }
  if (o.warmup < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("warmup must be >= 0");
  }
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout must be > 0");
  }
  if (o.request_pool < 1 || o.connections < 1) {
    return absl::InvalidArgumentError("request_pool and connections must be >= 1");
  }
  if (!(o.min_accuracy >= 0 && o.min_accuracy <= 1)) {
    return absl::InvalidArgumentError("min_accuracy must be in (0, 1], or 0 for none");
  }
  if (o.images_path.empty() != o.labels_path.empty()) {
    return absl::InvalidArgumentError("labelled images need both an image file and a label file");
  }
  if (!o.images_path.empty() && o.verify) {
    return absl::InvalidArgumentError(
        "verify checks generated images against their digest; it does not go with labelled "
        "images");
  }
  return absl::OkStatus();
}

// What an OK response said: the variant that answered, and with labelled
// images how many of its images it classified right.
struct Answer {
  std::string variant;
  int64_t correct = 0;
};

// One run: the calls in flight and the statistics of those that finished.
class LoadRun {
 public:
  LoadRun(const LoadOptions& options, const ModelShape& shape, Pool pool, absl::Time start)
      : options_(options),
        shape_(shape),
        pool_(std::move(pool)),
        window_start_(start + options.warmup),
        window_end_(start + options.warmup + options.duration),
        deadline_(options.timeout_us > 0
                      ? absl::Microseconds(static_cast<int64_t>(options.timeout_us))
                      : options.timeout),
        parse_responses_(options.verify || !options.images_path.empty() ||
                         !shape.declared_top1.empty()) {
    for (int i = 0; i < options.connections; ++i) {
      ChannelOptions channel;
      channel.connection_index = i;
      stubs_.push_back(std::make_unique<grpc::GenericStub>(MakeChannel(options.target, channel)));
    }
    if (options.streaming) {
      // The streams end when the run does; the deadline only bounds a hang.
      const absl::Time deadline = window_end_ + options.timeout;
      for (auto& stub : stubs_) {
        streams_.push_back(std::make_unique<Stream>(this, stub.get(), deadline));
      }
    }
  }

  // Streaming: half-closes every stream and waits until each has ended.
  void CloseStreams() {
    for (auto& s : streams_) s->Close();
    for (auto& s : streams_) s->WaitDone();
  }

  // Closed loop: starts `concurrency` calls; each completion starts the next
  // until the window ends.
  void StartClosedLoop() {
    {
      hgpipe::MutexLock l(&mu_);
      outstanding_ = options_.concurrency;
    }
    for (int i = 0; i < options_.concurrency; ++i) Issue(absl::Now());
  }

  // Open loop: issues calls on the schedule until the window ends. Runs on
  // its own thread; sleeps between arrivals (it never spins).
  void RunOpenLoop(absl::Time start) {
    std::mt19937_64 rng(options_.seed);
    std::exponential_distribution<double> exponential(options_.rate);
    const double constant_gap = 1.0 / options_.rate;
    absl::Time next = start;
    while (next < window_end_) {
      const absl::Time now = absl::Now();
      if (next > now) absl::SleepFor(next - now);
      {
        hgpipe::MutexLock l(&mu_);
        if (outstanding_ >= options_.max_outstanding) {
          ++late_requests_;
          auto below_cap = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            return outstanding_ < options_.max_outstanding;
          };
          if (!mu_.AwaitWithDeadline(absl::Condition(&below_cap), window_end_)) {
            break;
          }
        }
        ++outstanding_;
      }
      Issue(next);
      const double gap =
          options_.arrivals == LoadOptions::Arrivals::kPoisson ? exponential(rng) : constant_gap;
      next += absl::Seconds(gap);
    }
    hgpipe::MutexLock l(&mu_);
    issuing_done_ = true;
  }

  // Waits until every call has finished, reporting progress about once a
  // second and sampling CPU time at the window's edges.
  void Wait(absl::Time start, absl::AnyInvocable<void(const LoadProgress&)>& progress) {
    absl::Time next_tick = start + absl::Seconds(1);
    bool window_started = false, window_ended = false;
    int64_t last_images = 0;
    absl::Time last_tick = start;
    for (;;) {
      absl::Time wake = next_tick;
      if (!window_started) {
        wake = std::min(wake, window_start_);
      } else if (!window_ended) {
        wake = std::min(wake, window_end_);
      }
      std::optional<LoadProgress> report;
      {
        hgpipe::MutexLock l(&mu_);
        auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return issuing_done_ && outstanding_ == 0;
        };
        if (mu_.AwaitWithDeadline(absl::Condition(&finished), wake)) break;
        const absl::Time now = absl::Now();
        if (!window_started && now >= window_start_) {
          window_started = true;
          cpu_at_start_ = CpuSeconds();
        }
        if (!window_ended && now >= window_end_) {
          window_ended = true;
          cpu_at_end_ = CpuSeconds();
        }
        if (now >= next_tick) {
          LoadProgress& p = report.emplace();
          p.elapsed = now - start;
          p.warming_up = now < window_start_;
          p.images_per_second =
              (images_all_ - last_images) / absl::ToDoubleSeconds(now - last_tick);
          p.errors = error_count_;
          p.outstanding = outstanding_;
          last_images = images_all_;
          last_tick = now;
          while (next_tick <= now) next_tick += absl::Seconds(1);
        }
      }
      // Outside the lock: the callback may take its time.
      if (report && progress != nullptr) progress(*report);
    }
    if (!window_ended) cpu_at_end_ = CpuSeconds();
  }

  LoadResult Result() {
    hgpipe::MutexLock l(&mu_);
    LoadResult r;
    r.platform = shape_.platform;
    r.input_name = shape_.input_name;
    r.output_name = shape_.output_name;
    r.request_pool = static_cast<int>(pool_.entries.size());
    r.window_seconds = absl::ToDoubleSeconds(window_end_ - window_start_);
    r.requests_ok = static_cast<int64_t>(latencies_ms_.size());
    r.images_ok = r.requests_ok * options_.images_per_request;
    r.requests_per_second = r.requests_ok / r.window_seconds;
    r.images_per_second = r.images_ok / r.window_seconds;
    std::sort(latencies_ms_.begin(), latencies_ms_.end());
    if (!latencies_ms_.empty()) {
      r.latency_ms.p50 = Percentile(latencies_ms_, 0.50);
      r.latency_ms.p90 = Percentile(latencies_ms_, 0.90);
      r.latency_ms.p99 = Percentile(latencies_ms_, 0.99);
      r.latency_ms.max = latencies_ms_.back();
      double sum = 0;
      for (double v : latencies_ms_) sum += v;
      r.latency_ms.mean = sum / latencies_ms_.size();
    }
    r.errors = errors_;
    r.first_error_message = first_error_message_;
    r.requests_total = requests_total_;
    r.late_requests = late_requests_;
    r.offered = offered_;
    r.answered = answered_;
    r.within_deadline = within_deadline_;
    r.deadline_ms = absl::ToDoubleMilliseconds(deadline_);
    r.goodput = offered_ > 0 ? static_cast<double>(within_deadline_) / offered_ : 0;
    r.variants = variants_;
    int64_t images = 0, correct = 0;
    double declared = 0;
    bool all_declared = true;
    for (auto& [name, v] : r.variants) {
      auto it = shape_.declared_top1.find(name);
      if (it != shape_.declared_top1.end()) v.declared_top1 = it->second;
      images += v.images;
      correct += v.correct;
      if (v.declared_top1 < 0) {
        all_declared = false;
      } else {
        declared += v.declared_top1 * v.images;
      }
    }
    if (images > 0 && all_declared) r.declared_accuracy = declared / images;
    if (images > 0 && !options_.images_path.empty()) {
      r.measured_accuracy = static_cast<double>(correct) / images;
    }
    r.client_cpu_user_cores = (cpu_at_end_.user - cpu_at_start_.user) / r.window_seconds;
    r.client_cpu_system_cores = (cpu_at_end_.system - cpu_at_start_.system) / r.window_seconds;
    r.client_cpu_cores = r.client_cpu_user_cores + r.client_cpu_system_cores;
    return r;
  }

 private:
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer response;
    absl::Time sent;  // or scheduled, in the open loop
    size_t pool_index;
  };

  // One ModelStreamInfer call carrying many requests: writes go out one at
  // a time in the order issued; responses come back as the server completes
  // them, matched to their request by id (the pool index), each request of
  // an index answered in turn (they are the same request).
  class Stream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    Stream(LoadRun* run, grpc::GenericStub* stub, absl::Time deadline) : run_(run) {
      context_.set_deadline(absl::ToChronoTime(deadline));
      stub->PrepareBidiStreamingCall(&context_, kModelStreamInferMethod, grpc::StubOptions(), this);
      StartRead(&response_);
      StartCall();
    }

    // Queues pool request `index`, sent at `sent`. False if the stream has
    // ended (the request is not sent).
    bool Send(size_t index, absl::Time sent) {
      {
        hgpipe::MutexLock l(&mu_);
        if (ended_ || closing_) return false;
        waiting_[index].push_back(sent);
        to_write_.push_back(index);
        if (writing_) return true;
        writing_ = true;
      }
      WriteNext();
      return true;
    }

    void Close() {
      bool done_writing = false;
      {
        hgpipe::MutexLock l(&mu_);
        closing_ = true;
        done_writing = !writing_ && !ended_;
        writes_done_ = writes_done_ || done_writing;
      }
      if (done_writing) StartWritesDone();
    }

    void WaitDone() { done_->WaitForNotification(); }

    void OnWriteDone(bool ok) override {
      bool more = false, done_writing = false;
      {
        hgpipe::MutexLock l(&mu_);
        more = ok && !to_write_.empty();
        if (!more) {
          writing_ = false;
          done_writing = ok && closing_ && !writes_done_;
          writes_done_ = writes_done_ || done_writing;
        }
      }
      if (more) WriteNext();
      if (done_writing) StartWritesDone();
    }

    void OnReadDone(bool ok) override {
      if (!ok) return;  // the stream is over; OnDone counts what is unanswered
      inference::ModelStreamInferResponse parsed;
      grpc::Status p = grpc::SerializationTraits<inference::ModelStreamInferResponse>::Deserialize(
          &response_, &parsed);
      size_t index = 0;
      absl::Time sent;
      bool known = false;
      if (p.ok() && absl::SimpleAtoi(parsed.infer_response().id(), &index)) {
        hgpipe::MutexLock l(&mu_);
        auto it = waiting_.find(index);
        if (it != waiting_.end() && !it->second.empty()) {
          sent = it->second.front();
          it->second.pop_front();
          known = true;
        }
      }
      response_.Clear();
      StartRead(&response_);
      if (!known) return;  // not ours: the request stays unanswered
      std::string code, message;
      Answer answer;
      if (!parsed.error_message().empty()) {
        const std::string& e = parsed.error_message();
        const size_t colon = e.find(": ");
        code = colon == std::string::npos ? "STREAM_ERROR" : e.substr(0, colon);
        message = colon == std::string::npos ? e : e.substr(colon + 2);
      } else if (absl::Status s = run_->Check(index, parsed.infer_response(), &answer); !s.ok()) {
        code = run_->options_.verify ? "VERIFY_MISMATCH" : "BAD_RESPONSE";
        message = std::string(s.message());
      }
      run_->Finished(sent, std::move(code), std::move(message), /*may_reissue=*/true,
                     std::move(answer));
    }

    void OnDone(const grpc::Status& status) override {
      std::vector<absl::Time> unanswered;
      {
        hgpipe::MutexLock l(&mu_);
        for (auto& [index, times] : waiting_) {
          unanswered.insert(unanswered.end(), times.begin(), times.end());
        }
        waiting_.clear();
      }
      const std::string code = status.ok() ? "STREAM_ENDED" : StatusCodeName(status.error_code());
      for (absl::Time sent : unanswered) {
        run_->Finished(sent, code,
                       status.ok() ? "the stream ended before the answer" : status.error_message(),
                       /*may_reissue=*/false);
      }
      {
        hgpipe::MutexLock l(&mu_);
        ended_ = true;
      }
      // The stream may be destroyed as soon as WaitDone returns: the
      // notification outlives it here.
      std::shared_ptr<hgpipe::Notification> done = done_;
      done->Notify();
    }

   private:
    void WriteNext() {
      size_t index;
      {
        hgpipe::MutexLock l(&mu_);
        index = to_write_.front();
        to_write_.pop_front();
      }
      StartWrite(&run_->pool_.entries[index].request);
    }

    LoadRun* const run_;
    grpc::ClientContext context_;
    grpc::ByteBuffer response_;  // the one read outstanding
    hgpipe::Mutex mu_;
    std::deque<size_t> to_write_ ABSL_GUARDED_BY(mu_);
    absl::flat_hash_map<size_t, std::deque<absl::Time>> waiting_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool closing_ ABSL_GUARDED_BY(mu_) = false;
    bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
    bool ended_ ABSL_GUARDED_BY(mu_) = false;
    const std::shared_ptr<hgpipe::Notification> done_ = std::make_shared<hgpipe::Notification>();
  };

  // Starts one call; the caller has counted it in outstanding_.
  void Issue(absl::Time sent) {
    const uint64_t n = next_call_.fetch_add(1, std::memory_order_relaxed);
    const size_t index = n % pool_.entries.size();
    if (!streams_.empty()) {
      if (!streams_[n % streams_.size()]->Send(index, sent)) {
        Finished(sent, "STREAM_ENDED", "the stream had ended", /*may_reissue=*/false);
      }
      return;
    }
    auto* call = new Call;
    call->sent = sent;
    call->pool_index = index;
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
    stubs_[n % stubs_.size()]->UnaryCall(
        &call->context, kModelInferMethod, grpc::StubOptions(),
        &pool_.entries[call->pool_index].request, &call->response,
        [this, call](grpc::Status status) { OnDone(call, std::move(status)); });
  }

  // On a gRPC thread: records the call and, in the closed loop, replaces it.
  void OnDone(Call* call, grpc::Status status) {
    std::unique_ptr<Call> owned(call);
    std::string code, message;
    Answer answer;
    if (!status.ok()) {
      code = StatusCodeName(status.error_code());
      message = status.error_message();
    } else if (parse_responses_) {
      inference::ModelInferResponse response;
      grpc::Status parsed = grpc::SerializationTraits<inference::ModelInferResponse>::Deserialize(
          &owned->response, &response);
      absl::Status s =
          parsed.ok()
              ? Check(owned->pool_index, response, &answer)
              : absl::DataLossError(absl::StrCat("unparsable response: ", parsed.error_message()));
      if (!s.ok()) {
        code = options_.verify ? "VERIFY_MISMATCH" : "BAD_RESPONSE";
        message = std::string(s.message());
      }
    }
    const absl::Time sent = owned->sent;
    // Freed before the call is counted as finished: its ClientContext holds
    // the channel, and the channel must go with the LoadRun on RunLoad's
    // thread, never last on a gRPC thread while the process exits.
    owned.reset();
    Finished(sent, std::move(code), std::move(message), /*may_reissue=*/true, std::move(answer));
  }

  // Counts a finished request (`code` empty: OK) and, in the closed loop
  // and if `may_reissue`, replaces it.
  void Finished(absl::Time sent, std::string code, std::string message, bool may_reissue,
                Answer answer = {}) {
    const absl::Time now = absl::Now();
    bool reissue = false;
    {
      hgpipe::MutexLock l(&mu_);
      ++requests_total_;
      if (sent >= window_start_ && sent < window_end_) {
        ++offered_;
        if (code.empty()) {
          ++answered_;
          if (now - sent <= deadline_) ++within_deadline_;
          LoadResult::VariantCounts& v = variants_[answer.variant];
          ++v.requests;
          v.images += options_.images_per_request;
          v.correct += answer.correct;
        }
      }
      if (!code.empty()) {
        ++error_count_;
        if (errors_[code]++ == 0) first_error_message_[code] = message;
      } else {
        images_all_ += options_.images_per_request;
        if (now >= window_start_ && now <= window_end_) {
          latencies_ms_.push_back(absl::ToDoubleMilliseconds(now - sent));
        }
      }
      reissue = may_reissue && options_.rate == 0 && now < window_end_;
      if (!reissue) {
        --outstanding_;
        if (options_.rate == 0 && outstanding_ == 0) issuing_done_ = true;
      }
    }
    if (reissue) Issue(now);
  }

  // Reads an OK response of pool request `index`: the variant that answered
  // and, with labelled images, how many rows' argmax is their image's label;
  // with verify, checks the digests. DataLoss for a response that does not
  // hold what was asked.
  absl::Status Check(size_t index, const inference::ModelInferResponse& response, Answer* answer) {
    if (auto it = response.parameters().find("variant"); it != response.parameters().end()) {
      answer->variant = it->second.string_param();
    }
    if (options_.verify) return Verify(index, response);
    const std::vector<uint8_t>& labels = pool_.entries[index].labels;
    if (labels.empty()) return absl::OkStatus();
    std::vector<int64_t> shape;
    std::vector<float> values;
    if (pool_.out != nullptr) {
      // Shared memory: the response lists the output; its values are in this
      // request's range of the output object (4-byte INT32 or FP32 words).
      if (response.outputs_size() != 1) {
        return absl::DataLossError("the response lists no output in shared memory");
      }
      shape.assign(response.outputs(0).shape().begin(), response.outputs(0).shape().end());
      const char* base = pool_.out->data() + index * pool_.output_bytes;
      const size_t words = pool_.output_bytes / 4;
      values.resize(words);
      for (size_t i = 0; i < words; ++i) {
        if (response.outputs(0).datatype() == "FP32") {
          std::memcpy(&values[i], base + 4 * i, 4);
        } else {
          int32_t w;
          std::memcpy(&w, base + 4 * i, 4);
          values[i] = static_cast<float>(w);
        }
      }
    } else if (absl::StatusOr<OutputTensor<float>> f = ReadFp32Output(response, shape_.output_name);
               f.ok()) {
      shape = std::move(f->shape);
      values = std::move(f->values);
    } else {
      absl::StatusOr<OutputTensor<int32_t>> i = ReadInt32Output(response, shape_.output_name);
      if (!i.ok()) return absl::DataLossError(i.status().message());
      shape = std::move(i->shape);
      values.assign(i->values.begin(), i->values.end());
    }
    const int64_t n = static_cast<int64_t>(labels.size());
    if (shape.size() != 2 || shape[0] != n || shape[1] < 1 ||
        values.size() != static_cast<size_t>(n * shape[1])) {
      return absl::DataLossError(absl::StrCat("output shape is [", absl::StrJoin(shape, ","),
                                              "] for ", n, " labelled images"));
    }
    for (int64_t i = 0; i < n; ++i) {
      const auto row = absl::MakeConstSpan(values).subspan(i * shape[1], shape[1]);
      if (ArgMax(row) == labels[i]) ++answer->correct;
    }
    return absl::OkStatus();
  }

  // OK if every output row of pool request `index`'s `response` (or, with
  // shared memory, of its output region) is the verify digest of its own
  // input image.
  absl::Status Verify(size_t index, const inference::ModelInferResponse& response) {
    absl::StatusOr<OutputTensor<int32_t>> out;
    if (pool_.out == nullptr) {
      out = ReadInt32Output(response, shape_.output_name);
    } else {
      // The response lists the output with empty raw contents; the values
      // are in this request's range of the output object.
      if (response.outputs_size() != 1 || response.raw_output_contents_size() != 1 ||
          !response.raw_output_contents(0).empty()) {
        return absl::DataLossError("the output in shared memory came back in the response");
      }
      out.emplace();
      out->shape.assign(response.outputs(0).shape().begin(), response.outputs(0).shape().end());
      out->values.resize(pool_.output_bytes / sizeof(int32_t));
      std::memcpy(out->values.data(), pool_.out->data() + index * pool_.output_bytes,
                  pool_.output_bytes);
    }
    if (!out.ok()) return out.status();
    const std::vector<int32_t>& expected = pool_.entries[index].expected;
    const int64_t n = options_.images_per_request;
    if (out->shape.size() != 2 || out->shape[0] != n || out->shape[1] != shape_.classes) {
      return absl::DataLossError(absl::StrCat("output shape is [", absl::StrJoin(out->shape, ","),
                                              "], expected [", n, ",", shape_.classes, "]"));
    }
    for (int64_t i = 0; i < n; ++i) {
      const size_t row = i * shape_.classes;
      if (std::memcmp(out->values.data() + row, expected.data() + row,
                      shape_.classes * sizeof(int32_t)) != 0) {
        return absl::DataLossError(absl::StrCat("image ", i, " of pool request ", index,
                                                " does not match its input digest"));
      }
    }
    return absl::OkStatus();
  }

  // Constant after construction.
  const LoadOptions& options_;
  const ModelShape shape_;
  const Pool pool_;
  const absl::Time window_start_;
  const absl::Time window_end_;
  const absl::Duration deadline_;  // goodput's
  const bool parse_responses_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  std::vector<std::unique_ptr<Stream>> streams_;  // streaming: one per stub
  std::atomic<uint64_t> next_call_{0};

  hgpipe::Mutex mu_;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  bool issuing_done_ ABSL_GUARDED_BY(mu_) = false;
  int64_t requests_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t images_all_ ABSL_GUARDED_BY(mu_) = 0;  // ok, whole run
  int64_t error_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t late_requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
  int64_t offered_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t answered_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t within_deadline_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, LoadResult::VariantCounts> variants_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> first_error_message_ ABSL_GUARDED_BY(mu_);
  // Written and read by the thread in Wait() only.
  CpuTimes cpu_at_start_, cpu_at_end_;
};

// The labelled set, checked against the model's input [-1|N, H, W, 1].
absl::StatusOr<LabelledImages> ReadLabelled(const LoadOptions& options, const ModelShape& shape) {
  absl::StatusOr<LabelledImages> set = ReadLabelledImages(options.images_path, options.labels_path);
  if (!set.ok()) return set.status();
  const std::vector<int64_t>& d = shape.input_shape;
  auto fits = [](int64_t want, int64_t have) { return want == -1 || want == have; };
  if (d.size() != 4 || !fits(d[1], set->height) || !fits(d[2], set->width) || !fits(d[3], 1)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", options.model, "' input is [", absl::StrJoin(d, ","), "]; ", options.images_path,
        " holds ", set->height, " x ", set->width, " gray images"));
  }
  if (set->count() < static_cast<size_t>(options.images_per_request)) {
    return absl::InvalidArgumentError(absl::StrCat(options.images_path, " holds ", set->count(),
                                                   " images, fewer than one request's ",
                                                   options.images_per_request));
  }
  return set;
}

absl::StatusOr<Pool> BuildPool(const LoadOptions& options, const ModelShape& shape) {
  const bool labelled = !options.images_path.empty();
  std::optional<LabelledImages> set;
  if (labelled) {
    absl::StatusOr<LabelledImages> s = ReadLabelled(options, shape);
    if (!s.ok()) return s.status();
    set = *std::move(s);
  }
  const size_t image_bytes = labelled ? set->image_bytes()
                                      : static_cast<size_t>(shape.request_options.tokens) *
                                            shape.request_options.token_values;
  const size_t request_bytes = image_bytes * options.images_per_request;
  const size_t wanted = labelled ? set->count() / options.images_per_request : options.request_pool;
  const size_t pool_size = std::max<size_t>(
      1, std::min<size_t>(wanted, kPoolBytesLimit / std::max<size_t>(request_bytes, 1)));
  // Labelled: the set's first pool_size requests' pixels, bit for bit.
  const std::vector<int8_t> images =
      labelled
          ? std::vector<int8_t>(set->pixels.begin(),
                                set->pixels.begin() + pool_size * request_bytes)
          : GenerateRandomImages(pool_size * options.images_per_request, options.seed, image_bytes);
  Pool pool;
  pool.entries.resize(pool_size);
  const bool shared = options.shared_memory == LoadOptions::SharedMemory::kSystem;
  std::string in_region, out_region;
  if (shared) {
    // Outputs are 4-byte values (INT32 or FP32 logits), one range per pool
    // request: concurrent calls of one request write the same values.
    pool.output_bytes = static_cast<size_t>(options.images_per_request) * shape.classes * 4;
    const std::string stem = absl::StrCat("hgpipe_perf_", getpid());
    absl::StatusOr<std::unique_ptr<SharedMemoryObject>> in =
        SharedMemoryObject::Create(absl::StrCat("/", stem, "_in"), images.size());
    if (!in.ok()) return in.status();
    absl::StatusOr<std::unique_ptr<SharedMemoryObject>> out =
        SharedMemoryObject::Create(absl::StrCat("/", stem, "_out"), pool_size * pool.output_bytes);
    if (!out.ok()) return out.status();
    pool.in = *std::move(in);
    pool.out = *std::move(out);
    std::memcpy(pool.in->data(), images.data(), images.size());
    absl::StatusOr<std::unique_ptr<InferenceClient>> client =
        InferenceClient::Create(options.target);
    if (!client.ok()) return client.status();
    pool.registrar = *std::move(client);
    in_region = stem + "_input";
    out_region = stem + "_output";
    for (const auto& [region, object] :
         {std::pair{in_region, pool.in.get()}, std::pair{out_region, pool.out.get()}}) {
      absl::Status s =
          pool.registrar->RegisterSystemSharedMemory(region, object->key(), object->size());
      if (!s.ok()) return s;
      pool.regions.push_back(region);
    }
  }
  for (size_t r = 0; r < pool_size; ++r) {
    absl::Span<const int8_t> request_images =
        absl::MakeConstSpan(images).subspan(r * request_bytes, request_bytes);
    ImageRequestOptions request_options = shape.request_options;
    request_options.priority = options.priority;
    request_options.timeout_us = options.timeout_us;
    // Streamed responses are matched to their request by id.
    if (options.streaming) request_options.id = absl::StrCat(r);
    absl::StatusOr<inference::ModelInferRequest> request =
        labelled ? MakeGrayPixelsRequest(
                       options.model, shape.input_name, shape.output_name, set->height, set->width,
                       absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(request_images.data()),
                                           request_images.size()))
                 : MakeImageRequest(options.model, request_images, request_options);
    if (!request.ok()) return request.status();
    if (labelled) {
      request->set_id(request_options.id);
      SetPriority(&*request, options.priority);
      SetTimeoutMicros(&*request, options.timeout_us);
      const size_t first = r * options.images_per_request;
      pool.entries[r].labels.assign(set->labels.begin() + first,
                                    set->labels.begin() + first + options.images_per_request);
    }
    SetMinAccuracy(&*request, options.min_accuracy);
    if (shared) {
      request->clear_raw_input_contents();
      SetSharedMemory(request->mutable_inputs(0)->mutable_parameters(), in_region, request_bytes,
                      r * request_bytes);
      if (request->outputs_size() == 0) request->add_outputs()->set_name(shape.output_name);
      SetSharedMemory(request->mutable_outputs(0)->mutable_parameters(), out_region,
                      pool.output_bytes, r * pool.output_bytes);
    }
    bool own_buffer = false;
    grpc::Status s = grpc::SerializationTraits<inference::ModelInferRequest>::Serialize(
        *request, &pool.entries[r].request, &own_buffer);
    if (!s.ok()) {
      return absl::InternalError(absl::StrCat("serializing a request: ", s.error_message()));
    }
    if (options.verify) {
      pool.entries[r].expected.resize(options.images_per_request * shape.classes);
      for (int i = 0; i < options.images_per_request; ++i) {
        verify::ExpectedLogits(request_images.data() + i * image_bytes, image_bytes,
                               static_cast<uint32_t>(shape.classes),
                               pool.entries[r].expected.data() + i * shape.classes);
      }
    }
  }
  return pool;
}

void AppendJsonString(std::string& out, absl::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.6g", v);
}

}  // namespace

int64_t LoadResult::error_count() const {
  int64_t n = 0;
  for (const auto& [code, count] : errors) n += count;
  return n;
}

double Percentile(absl::Span<const double> sorted, double q) {
  if (sorted.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  if (rank < 1) rank = 1;
  return sorted[rank - 1];
}

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options,
                                   absl::AnyInvocable<void(const LoadProgress&)> progress) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  absl::StatusOr<ModelShape> shape = DescribeModel(options);
  if (!shape.ok()) return shape.status();
  absl::StatusOr<Pool> pool = BuildPool(options, *shape);
  if (!pool.ok()) return pool.status();

  const absl::Time start = absl::Now();
  LoadRun run(options, *shape, *std::move(pool), start);
  std::thread dispatcher;
  if (options.rate > 0) {
    dispatcher = std::thread([&run, start] { run.RunOpenLoop(start); });
  } else {
    run.StartClosedLoop();
  }
  run.Wait(start, progress);
  if (dispatcher.joinable()) dispatcher.join();
  run.CloseStreams();
  return run.Result();
}

std::string LoadResultToJson(const LoadOptions& o, const LoadResult& r) {
  std::string j = "{";
  auto key = [&j](absl::string_view k) {
    if (j.back() != '{') j += ", ";
    AppendJsonString(j, k);
    j += ": ";
  };
  key("settings");
  j += "{";
  key("url");
  AppendJsonString(j, o.target);
  key("model");
  AppendJsonString(j, o.model);
  key("images_per_request");
  j += absl::StrCat(o.images_per_request);
  key("mode");
  AppendJsonString(j, o.rate > 0 ? "open" : "closed");
  if (o.rate > 0) {
    key("rate");
    j += JsonNumber(o.rate);
    key("arrivals");
    AppendJsonString(j, o.arrivals == LoadOptions::Arrivals::kPoisson ? "poisson" : "constant");
    key("max_outstanding");
    j += absl::StrCat(o.max_outstanding);
  } else {
    key("concurrency");
    j += absl::StrCat(o.concurrency);
  }
  key("duration_s");
  j += JsonNumber(absl::ToDoubleSeconds(o.duration));
  key("warmup_s");
  j += JsonNumber(absl::ToDoubleSeconds(o.warmup));
  key("timeout_s");
  j += JsonNumber(absl::ToDoubleSeconds(o.timeout));
  if (o.priority != 0) {
    key("priority");
    j += absl::StrCat(o.priority);
  }
  if (o.timeout_us != 0) {
    key("timeout_us");
    j += absl::StrCat(o.timeout_us);
  }
  if (o.min_accuracy != 0) {
    key("min_accuracy");
    j += JsonNumber(o.min_accuracy);
  }
  if (!o.images_path.empty()) {
    key("images");
    AppendJsonString(j, o.images_path);
    key("labels");
    AppendJsonString(j, o.labels_path);
  }
  key("verify");
  j += o.verify ? "true" : "false";
  key("request_pool");
  j += absl::StrCat(r.request_pool);
  key("connections");
  j += absl::StrCat(o.connections);
  key("shared_memory");
  AppendJsonString(j, o.shared_memory == LoadOptions::SharedMemory::kSystem ? "system" : "none");
  key("streaming");
  j += o.streaming ? "true" : "false";
  key("seed");
  j += absl::StrCat(o.seed);
  j += "}";
  key("platform");
  AppendJsonString(j, r.platform);
  key("window_s");
  j += JsonNumber(r.window_seconds);
  key("images_per_second");
  j += JsonNumber(r.images_per_second);
  key("requests_per_second");
  j += JsonNumber(r.requests_per_second);
  key("latency_ms");
  j += "{";
  key("p50");
  j += JsonNumber(r.latency_ms.p50);
  key("p90");
  j += JsonNumber(r.latency_ms.p90);
  key("p99");
  j += JsonNumber(r.latency_ms.p99);
  key("max");
  j += JsonNumber(r.latency_ms.max);
  key("mean");
  j += JsonNumber(r.latency_ms.mean);
  j += "}";
  key("requests_ok");
  j += absl::StrCat(r.requests_ok);
  key("images_ok");
  j += absl::StrCat(r.images_ok);
  key("requests_total");
  j += absl::StrCat(r.requests_total);
  key("error_count");
  j += absl::StrCat(r.error_count());
  key("errors");
  j += "{";
  for (const auto& [code, count] : r.errors) {
    key(code);
    j += absl::StrCat(count);
  }
  j += "}";
  key("first_error_message");
  j += "{";
  for (const auto& [code, message] : r.first_error_message) {
    key(code);
    AppendJsonString(j, message);
  }
  j += "}";
  key("late_requests");
  j += absl::StrCat(r.late_requests);
  key("offered");
  j += absl::StrCat(r.offered);
  key("answered");
  j += absl::StrCat(r.answered);
  key("within_deadline");
  j += absl::StrCat(r.within_deadline);
  key("deadline_ms");
  j += JsonNumber(r.deadline_ms);
  key("goodput");
  j += JsonNumber(r.goodput);
  key("variants");
  j += "{";
  for (const auto& [name, v] : r.variants) {
    key(name);
    j += "{";
    key("requests");
    j += absl::StrCat(v.requests);
    key("images");
    j += absl::StrCat(v.images);
    key("share");
    j += JsonNumber(r.answered > 0 ? static_cast<double>(v.requests) / r.answered : 0);
    key("declared_top1");
    j += v.declared_top1 >= 0 ? JsonNumber(v.declared_top1) : "null";
    if (!o.images_path.empty()) {
      key("correct");
      j += absl::StrCat(v.correct);
      key("accuracy");
      j += JsonNumber(v.images > 0 ? static_cast<double>(v.correct) / v.images : 0);
    }
    j += "}";
  }
  j += "}";
  key("declared_accuracy");
  j += r.declared_accuracy >= 0 ? JsonNumber(r.declared_accuracy) : "null";
  key("measured_accuracy");
  j += r.measured_accuracy >= 0 ? JsonNumber(r.measured_accuracy) : "null";
  key("client_cpu_cores");
  j += JsonNumber(r.client_cpu_cores);
  key("client_cpu_user_cores");
  j += JsonNumber(r.client_cpu_user_cores);
  key("client_cpu_system_cores");
  j += JsonNumber(r.client_cpu_system_cores);
  j += "}";
  return j;
}

}  // namespace hgpipe::clients
