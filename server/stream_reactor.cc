#include "server/stream_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace hgpipe::server {

bool OpenStreams::Add(StreamReactor* stream, const InferPipeline& pipeline) {
  hgpipe::MutexLock l(&mu_);
  streams_.insert(stream);
  return pipeline.Draining();
}

void OpenStreams::Remove(StreamReactor* stream) {
  hgpipe::MutexLock l(&mu_);
  streams_.erase(stream);
}

void OpenStreams::DrainAll() {
  hgpipe::MutexLock l(&mu_);
  for (StreamReactor* s : streams_) s->Drain();
}

StreamReactor::StreamReactor(InferPipeline* pipeline, OpenStreams* streams, absl::Time deadline)
    : pipeline_(pipeline), streams_(streams), deadline_(deadline) {
  const bool draining = streams_->Add(this, *pipeline_);
  Actions a;
  {
    hgpipe::MutexLock l(&mu_);
    draining_ = draining_ || draining;  // Drain may already have run
    DecideLocked(&a);
  }
  Act(std::move(a));
}

void StreamReactor::OnReadDone(bool ok) {
  Actions a;
  Item* item = nullptr;
  {
    hgpipe::MutexLock l(&mu_);
    // Finish does not cancel a read under way, and gRPC may still complete
    // it with a request (one already received): after Finish nothing may be
    // started, or its answer would come after OnDone deleted the stream.
    if (!ok || finished_) {  // the client half-closed, or the call is over
      reads_done_ = true;
      reading_into_.reset();
    } else {
      item = reading_into_.release();  // owned by its completion from here
      item->bytes = item->request.ByteSizeLong();
      bytes_held_ += item->bytes;
      // One for the request, one held by this reaction until its end
      // (ReleaseHold), so that no other thread finishes (and deletes) the
      // stream under it.
      in_flight_ += 2;
    }
    if (item == nullptr) DecideLocked(&a);
  }
  if (item == nullptr) {
    Act(std::move(a));
    return;
  }
  pipeline_->Infer(item->request, item->response.mutable_infer_response(), deadline_,
                   {InferOrigin::Wire::kGrpc},
                   [this, item](absl::Status s) { OnInferDone(item, std::move(s)); });
  ReleaseHold();
}

void StreamReactor::ReleaseHold() {
  Actions a;
  {
    hgpipe::MutexLock l(&mu_);
    --in_flight_;
    DecideLocked(&a);
  }
  Act(std::move(a));
}

void StreamReactor::OnWriteDone(bool ok) {
  Actions a;
  {
    hgpipe::MutexLock l(&mu_);
    a.remove.push_back(to_write_.front());
    bytes_held_ -= to_write_.front()->bytes;
    to_write_.pop_front();
    --in_flight_;
    if (!ok) write_failed_ = true;
    if (write_failed_) {  // the client is gone: drop what waits
      for (Item* i : to_write_) bytes_held_ -= i->bytes;
      a.remove.insert(a.remove.end(), to_write_.begin(), to_write_.end());
      in_flight_ -= static_cast<int>(to_write_.size());
      to_write_.clear();
    }
    if (!to_write_.empty()) {
      a.write = to_write_.front();
    } else {
      writing_ = false;
    }
    DecideLocked(&a);
  }
  Act(std::move(a));
}

void StreamReactor::OnDone() {
  streams_->Remove(this);
  delete this;
}

void StreamReactor::Drain() {
  Actions a;
  {
    hgpipe::MutexLock l(&mu_);
    draining_ = true;
    DecideLocked(&a);
  }
  Act(std::move(a));
}

void StreamReactor::OnInferDone(Item* item, absl::Status s) {
  if (!s.ok()) {
    inference::ModelInferResponse* r = item->response.mutable_infer_response();
    r->Clear();
    r->set_id(item->request.id());
    r->set_model_name(item->request.model_name());
    item->response.set_error_message(
        absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message()));
  }
  // The pipeline no longer reads the request's images: free them now
  // rather than when the response is written (a client slow to read
  // would otherwise hold every request it sent).
  inference::ModelInferRequest().Swap(&item->request);
  const size_t response_bytes = item->response.ByteSizeLong();
  Actions a;
  {
    hgpipe::MutexLock l(&mu_);
    bytes_held_ = bytes_held_ - item->bytes + response_bytes;
    item->bytes = response_bytes;
    if (write_failed_) {
      --in_flight_;
      bytes_held_ -= item->bytes;
      a.remove.push_back(item);
    } else {
      to_write_.push_back(item);
      if (!writing_) {
        writing_ = true;
        a.write = item;
      }
    }
    // Not a gRPC reaction: nothing stops another thread from finishing the
    // stream (a failed write drops this item) and OnDone from deleting it
    // before this thread has started its write. Held until it has; the
    // release then decides the next read and the end.
    ++in_flight_;
  }
  Act(std::move(a));
  ReleaseHold();
}

void StreamReactor::DecideLocked(Actions* a) {
  if (finished_) return;
  // One request is always allowed, whatever its size (gRPC's message
  // limit bounds it).
  if (reading_into_ == nullptr && !reads_done_ && !draining_ && !write_failed_ &&
      in_flight_ < kMaxInFlight && (in_flight_ == 0 || bytes_held_ < kMaxBytesHeld)) {
    reading_into_ = std::make_unique<Item>();
    a->read = &reading_into_->request;
  }
  if (in_flight_ == 0 && !writing_ && (reads_done_ || draining_ || write_failed_)) {
    finished_ = true;
    a->read = nullptr;
    if (write_failed_) {
      a->finish = grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading responses");
    } else if (reads_done_) {
      a->finish = grpc::Status::OK;
    } else {
      a->finish = grpc::Status(grpc::StatusCode::UNAVAILABLE, "hgpipe-server is shutting down");
    }
  }
}

void StreamReactor::Act(Actions a) {
  for (Item* i : a.remove) delete i;
  if (a.write != nullptr) StartWrite(&a.write->response);
  if (a.read != nullptr) StartRead(a.read);
  if (a.finish.has_value()) Finish(*std::move(a.finish));
}

}  // namespace hgpipe::server
