#include "server/http_server.h"

#include <array>
#include <atomic>
#include <charconv>
#include <limits>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "base/thread_name.h"
#include "server/http_body_coding.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/write.hpp"
#include "boost/asio/read.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "glog/logging.h"

namespace hgpipe::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

std::optional<absl::string_view> HttpRequest::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return absl::string_view(v);
  }
  return std::nullopt;
}

namespace {

constexpr uint32_t kMaxHeaderBytes = 16 << 10;

const char* Reason(unsigned status) {
  return http::obsolete_reason(static_cast<http::status>(status)).data();
}

std::string ErrorJson(absl::string_view message) {
  // Messages are ours: escape the characters JSON needs escaped.
  std::string out = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  out += "\"}";
  return out;
}

// What every session shares with the server.
struct Shared {
  HttpServer::Options options;
  HttpHandler* handler = nullptr;
  std::atomic<uint64_t> pending_bytes{0};
  hgpipe::Mutex mu;
  int in_handler ABSL_GUARDED_BY(mu) = 0;  // requests handed over, not yet written
  bool stopping ABSL_GUARDED_BY(mu) = false;
};

// One connection. Reads a request's headers with Beast's parser, its body
// directly into the request's strings, hands it to the handler and writes
// the reply; then the next request (keep-alive). Everything runs on the
// connection's strand; the handler's reply is posted back to it.
template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(std::shared_ptr<Shared> shared, Stream stream)
      : shared_(std::move(shared)), stream_(std::move(stream)), timer_(stream_.get_executor()) {}

  void Start() {
    if constexpr (kTls) {
      ArmTimer();
      stream_.async_handshake(
          asio::ssl::stream_base::server,
          [self = this->shared_from_this()](const boost::system::error_code& ec) {
            if (ec) {
              self->Close();
              return;
            }
            self->ReadHeader();
          });
    } else {
      ReadHeader();
    }
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, tcp::socket>;

  tcp::socket& Socket() {
    if constexpr (kTls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  // The whole request (headers and body) must arrive within the timeout;
  // expiry cancels the read, which answers 408.
  // A generation tells a stale expiry (one already queued when the timer
  // was re-armed) from the current one.
  void ArmTimer() {
    const uint64_t generation = ++timer_generation_;
    timer_.expires_after(
        std::chrono::microseconds(absl::ToInt64Microseconds(shared_->options.request_timeout)));
    timer_.async_wait(
        [self = this->shared_from_this(), generation](const boost::system::error_code& ec) {
          if (ec || generation != self->timer_generation_) return;  // re-armed or cancelled
          self->timed_out_ = true;
          boost::system::error_code ignored;
          self->Socket().cancel(ignored);
        });
  }

  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    // The body never goes through the parser; the size limit is ours.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    request_ = std::make_unique<HttpRequest>();
    timed_out_ = false;
    ArmTimer();
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (timed_out_) {
      if (!parser_->got_some()) {
        Close();  // an idle keep-alive connection: close quietly
      } else {
        Fail(408, absl::StrCat("the request headers did not arrive within ",
                               absl::FormatDuration(shared_->options.request_timeout)));
      }
      return;
    }
    if (ec && !parser_->got_some()) {
      Close();  // the client closed between requests
      return;
    }
    if (ec) {
      Fail(400, absl::StrCat("malformed HTTP request: ", ec.message()));
      return;
    }
    const auto& h = parser_->get();
    request_->method = std::string(h.method_string());
    const absl::string_view target(h.target().data(), h.target().size());
    request_->path = std::string(target.substr(0, target.find('?')));
    for (const auto& f : h) {
      request_->headers.emplace_back(
          absl::AsciiStrToLower(absl::string_view(f.name_string().data(), f.name_string().size())),
          std::string(f.value()));
    }
    keep_alive_ = h.keep_alive();
    coding_ = BodyCoding::kIdentity;
    if (auto e = request_->Header("content-encoding")) {
      auto coding = ParseContentEncoding(*e);
      if (!coding.ok()) {
        Fail(415, coding.status().message());
        return;
      }
      coding_ = *coding;
    }
    chunked_ = parser_->chunked();
    // A compressed or chunked body is read whole and split (and inflated)
    // once it is complete; a plain one lands straight in its two strings.
    whole_body_ = chunked_ || coding_ != BodyCoding::kIdentity;
    const uint64_t length = parser_->content_length().value_or(0);
    if (length > shared_->options.max_input_bytes) {
      Fail(413, absl::StrCat("the request body of ", length, " bytes is larger than ",
                             shared_->options.max_input_bytes, " (--http-max-input-size)"));
      return;
    }
    header_length_ = length;
    if (auto v = request_->Header("inference-header-content-length")) {
      if (!absl::SimpleAtoi(*v, &header_length_)) {
        Fail(400, "Inference-Header-Content-Length is not a number");
        return;
      }
      if (!whole_body_ && header_length_ > length) {
        Fail(400, absl::StrCat("Inference-Header-Content-Length ", header_length_,
                               " is larger than the body (", length, " bytes)"));
        return;
      }
      request_->has_inference_header = true;
    }
    if (!Reserve(length)) return;
    // Capacity now, memory as bytes arrive (ReadBody grows the strings within
    // it): a client that announces a large body and stalls holds address
    // space, not memory.
    body_want_ = whole_body_ ? length : header_length_;
    binary_want_ = length - body_want_;
    request_->body.reserve(body_want_);
    request_->binary.reserve(binary_want_);
    // Body bytes the header read already took.
    auto take = [&](std::string& dst, size_t want) {
      const size_t n = std::min(buffer_.size(), want - dst.size());
      const size_t at = dst.size();
      dst.resize(at + n);
      asio::buffer_copy(asio::buffer(dst.data() + at, n), buffer_.data());
      buffer_.consume(n);
    };
    take(request_->body, body_want_);
    if (request_->body.size() == body_want_) take(request_->binary, binary_want_);
    if (auto e = request_->Header("expect");
        e.has_value() && absl::EqualsIgnoreCase(*e, "100-continue") && (length > 0 || chunked_)) {
      continue_ = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(continue_),
                        [self = this->shared_from_this()](beast::error_code ec, size_t) {
                          if (ec) {
                            self->Close();
                            return;
                          }
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  // Reads the rest of the body straight into the request's strings, at most
  // kBodyStep bytes at a time.
  static constexpr size_t kBodyStep = 1 << 20;
  void ReadBody() {
    if (chunked_) {
      ReadChunks();
      return;
    }
    std::string* dst = nullptr;
    size_t want = 0;
    if (request_->body.size() < body_want_) {
      dst = &request_->body;
      want = body_want_;
    } else if (request_->binary.size() < binary_want_) {
      dst = &request_->binary;
      want = binary_want_;
    } else {
      OnBody({});
      return;
    }
    const size_t at = dst->size();
    const size_t n = std::min(kBodyStep, want - at);
    dst->resize(at + n);  // within the reserved capacity: no reallocation
    asio::async_read(stream_, asio::buffer(dst->data() + at, n),
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec || self->timed_out_) {
                         self->OnBody(ec);
                         return;
                       }
                       self->ReadBody();
                     });
  }

  // Adds `bytes` to the bytes in flight, or answers 503 and returns false.
  bool Reserve(uint64_t bytes) {
    if (shared_->pending_bytes.fetch_add(bytes) + bytes > shared_->options.max_pending_bytes) {
      shared_->pending_bytes.fetch_sub(bytes);
      Fail(503, "too many request bytes in flight; retry later");
      return false;
    }
    reserved_ += bytes;
    return true;
  }

  // A chunked body: Beast parses the framing, each chunk's data is appended
  // to the body as it arrives, within the same limits as a Content-Length.
  void ReadChunks() {
    chunk_failure_.reset();
    on_chunk_ = [this](uint64_t, beast::string_view data, beast::error_code& ec) -> size_t {
      const uint64_t size = request_->body.size() + data.size();
      if (size > shared_->options.max_input_bytes) {
        chunk_failure_.emplace(
            413, absl::StrCat("the chunked request body is larger than ",
                              shared_->options.max_input_bytes, " bytes (--http-max-input-size)"));
      } else if (shared_->pending_bytes.fetch_add(data.size()) + data.size() >
                 shared_->options.max_pending_bytes) {
        shared_->pending_bytes.fetch_sub(data.size());
        chunk_failure_.emplace(503, "too many request bytes in flight; retry later");
      }
      if (chunk_failure_.has_value()) {
        ec = http::error::body_limit;
        return 0;
      }
      reserved_ += data.size();
      request_->body.append(data.data(), data.size());
      return data.size();
    };
    parser_->on_chunk_body(on_chunk_);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) {
          if (self->timed_out_) {
            self->OnBody(ec);
          } else if (self->chunk_failure_.has_value()) {
            self->Fail(self->chunk_failure_->first, self->chunk_failure_->second);
          } else if (ec &&
                     ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
                     ec != http::error::partial_message && ec != http::error::end_of_stream) {
            self->Fail(400, absl::StrCat("malformed chunked body: ", ec.message()));
          } else {
            self->OnBody(ec);
          }
        });
  }

  // A whole body (chunked or compressed) made into what a Content-Length
  // body would have been: inflated, then split at the JSON header's length.
  // Costs a copy of the binary part, which the plain path avoids.
  bool FinishWholeBody() {
    if (coding_ != BodyCoding::kIdentity) {
      auto inflated = InflateBody(coding_, request_->body, shared_->options.max_input_bytes);
      if (!inflated.ok()) {
        Fail(inflated.status().code() == absl::StatusCode::kResourceExhausted ? 413 : 400,
             inflated.status().message());
        return false;
      }
      if (!Reserve(inflated->size())) return false;
      request_->body = std::move(*inflated);
    }
    if (request_->has_inference_header) {
      if (header_length_ > request_->body.size()) {
        Fail(400, absl::StrCat("Inference-Header-Content-Length ", header_length_,
                               " is larger than the body (", request_->body.size(), " bytes)"));
        return false;
      }
      request_->binary.assign(request_->body, header_length_);
      request_->body.resize(header_length_);
    }
    return true;
  }

  void OnBody(beast::error_code ec) {
    if (timed_out_) {
      Fail(408, absl::StrCat("the request body did not arrive within ",
                             absl::FormatDuration(shared_->options.request_timeout)));
      return;
    }
    if (ec) {
      Close();  // the client went away mid-body
      return;
    }
    ++timer_generation_;
    timer_.cancel();
    if (whole_body_ && !FinishWholeBody()) return;
    {
      hgpipe::MutexLock l(&shared_->mu);
      ++shared_->in_handler;
    }
    asio::any_io_executor ex = stream_.get_executor();
    shared_->handler->Handle(std::move(request_),
                             [self = this->shared_from_this(), ex](HttpResponse r) mutable {
                               asio::post(ex, [self, r = std::move(r)]() mutable {
                                 self->Write(std::move(r), /*handled=*/true);
                               });
                             });
  }

  // Answers an error and closes the connection.
  void Fail(unsigned status, absl::string_view message) {
    keep_alive_ = false;
    HttpResponse r;
    r.status = status;
    r.body = ErrorJson(message);
    Write(std::move(r), /*handled=*/false);
  }

  void Write(HttpResponse r, bool handled) {
    ++timer_generation_;
    timer_.cancel();
    response_ = std::move(r);
    head_ = absl::StrCat("HTTP/1.1 ", response_.status, " ", Reason(response_.status),
                         "\r\nContent-Type: ", response_.content_type, "\r\n");
    size_t length = response_.body.size();
    for (absl::string_view b : response_.binary) length += b.size();
    absl::StrAppend(&head_, "Content-Length: ", length, "\r\n");
    if (response_.binary_format) {
      absl::StrAppend(&head_, "Inference-Header-Content-Length: ", response_.body.size(), "\r\n");
    }
    if (!keep_alive_) head_ += "Connection: close\r\n";
    head_ += "\r\n";
    std::vector<asio::const_buffer> out;
    out.reserve(2 + response_.binary.size());
    out.push_back(asio::buffer(head_));
    out.push_back(asio::buffer(response_.body));
    for (absl::string_view b : response_.binary) out.push_back(asio::buffer(b.data(), b.size()));
    asio::async_write(stream_, out,
                      [self = this->shared_from_this(), handled](beast::error_code ec, size_t) {
                        self->OnWritten(ec, handled);
                      });
  }

  void OnWritten(beast::error_code ec, bool handled) {
    response_ = HttpResponse();
    Release();
    if (handled) {
      hgpipe::MutexLock l(&shared_->mu);
      --shared_->in_handler;
    }
    bool stopping;
    {
      hgpipe::MutexLock l(&shared_->mu);
      stopping = shared_->stopping;
    }
    if (ec || stopping) {
      Close();
      return;
    }
    if (!keep_alive_) {
      LingeringClose();
      return;
    }
    ReadHeader();
  }

  // After an error the client may still be sending a body we did not read;
  // closing at once would reset the connection and could destroy the
  // response before the client reads it. Stop sending, then read and drop
  // what comes until the client closes (bounded by the request timeout).
  void LingeringClose() {
    if constexpr (kTls) {
      Close();
    } else {
      boost::system::error_code ignored;
      Socket().shutdown(tcp::socket::shutdown_send, ignored);
      timed_out_ = false;
      ArmTimer();
      Drain();
    }
  }

  void Drain() {
    Socket().async_read_some(asio::buffer(drain_),
                             [self = this->shared_from_this()](beast::error_code ec, size_t) {
                               if (ec || self->timed_out_) {
                                 self->Close();
                                 return;
                               }
                               self->Drain();
                             });
  }

  void Release() {
    if (reserved_ > 0) shared_->pending_bytes.fetch_sub(reserved_);
    reserved_ = 0;
  }

  void Close() {
    ++timer_generation_;
    timer_.cancel();
    Release();
    boost::system::error_code ignored;
    Socket().shutdown(tcp::socket::shutdown_both, ignored);
    Socket().close(ignored);
  }

  const std::shared_ptr<Shared> shared_;
  Stream stream_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_{kMaxHeaderBytes};
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::unique_ptr<HttpRequest> request_;
  HttpResponse response_;
  std::string head_;
  std::string continue_;
  std::array<char, 4096> drain_;
  uint64_t timer_generation_ = 0;
  uint64_t reserved_ = 0;
  size_t body_want_ = 0, binary_want_ = 0;
  uint64_t header_length_ = 0;  // Inference-Header-Content-Length, else the body's
  BodyCoding coding_ = BodyCoding::kIdentity;
  bool chunked_ = false;
  bool whole_body_ = false;
  std::function<size_t(uint64_t, beast::string_view, beast::error_code&)> on_chunk_;
  std::optional<std::pair<unsigned, std::string>> chunk_failure_;
  bool keep_alive_ = true;
  bool timed_out_ = false;
};

class HttpServerImpl final : public HttpServer {
 public:
  HttpServerImpl(const Options& options, HttpHandler* handler)
      : shared_(std::make_shared<Shared>()),
        ssl_(asio::ssl::context::tls_server),
        acceptor_(asio::make_strand(ioc_)) {
    shared_->options = options;
    shared_->handler = handler;
  }

  ~HttpServerImpl() override { StopNow(); }

  absl::Status Listen() {
    const Options& o = shared_->options;
    if (!o.cert_file.empty()) {
      boost::system::error_code ec;
      ssl_.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
      ssl_.use_certificate_chain_file(o.cert_file, ec);
      if (ec) return Bad("certificate", o.cert_file, ec);
      ssl_.use_private_key_file(o.key_file, asio::ssl::context::pem, ec);
      if (ec) return Bad("key", o.key_file, ec);
      if (o.mutual_tls) {
        ssl_.load_verify_file(o.root_cert_file, ec);
        if (ec) return Bad("root certificate", o.root_cert_file, ec);
        ssl_.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
      }
      tls_ = true;
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(o.host, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat("--host '", o.host, "': ", ec.message()));
    }
    const tcp::endpoint endpoint(address, static_cast<uint16_t>(o.port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen for HTTP on ", o.host, ":", o.port, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    for (int i = 0; i < std::max(1, o.threads); ++i) {
      threads_.emplace_back([this, i] {
        NameThisThread(absl::StrCat("hgpipe-http-", i));
        ioc_.run();
      });
    }
    return absl::OkStatus();
  }

  int port() const override { return port_; }

  void Stop(absl::Time deadline) override {
    asio::post(acceptor_.get_executor(), [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    });
    {
      hgpipe::MutexLock l(&shared_->mu);
      shared_->stopping = true;
      shared_->mu.AwaitWithDeadline(
          absl::Condition(
              +[](Shared* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->in_handler == 0; },
              shared_.get()),
          deadline);
    }
    StopNow();
  }

 private:
  static absl::Status Bad(absl::string_view what, const std::string& file,
                          const boost::system::error_code& ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP TLS ", what, " '", file, "': ", ec.message()));
  }

  void StopNow() {
    if (stopped_) return;
    stopped_ = true;
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  void Accept() {
    acceptor_.async_accept(
        asio::make_strand(ioc_), [this](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
          if (!ec) {
            boost::system::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            if (tls_) {
              std::make_shared<Session<asio::ssl::stream<tcp::socket>>>(
                  shared_, asio::ssl::stream<tcp::socket>(std::move(socket), ssl_))
                  ->Start();
            } else {
              std::make_shared<Session<tcp::socket>>(shared_, std::move(socket))->Start();
            }
          }
          Accept();
        });
  }

  const std::shared_ptr<Shared> shared_;
  // Before ioc_: the sessions ioc_ still holds when it is destroyed use it.
  asio::ssl::context ssl_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  bool tls_ = false;
  int port_ = 0;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options,
                                                              HttpHandler* handler) {
  auto server = std::make_unique<HttpServerImpl>(options, handler);
  if (absl::Status s = server->Listen(); !s.ok()) return s;
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace hgpipe::server
