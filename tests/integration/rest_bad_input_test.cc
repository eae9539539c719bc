// Bad input on the REST port: each answered 4xx with a clear message,
// memory stays bounded, and the server keeps serving.
#include <atomic>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http_client.h"
#include "server_process.h"
#include "verify_requests.h"

namespace hgpipe::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kMaxInput = 4 << 20;  // --http-max-input-size

class RestBadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = ServerProcess::Start({"--boards=sim:1", "--http-request-timeout-ms=1500",
                                   absl::StrCat("--http-max-input-size=", kMaxInput),
                                   "--model-repository=" + SourceDir() + "/models"});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    if (server_ == nullptr) return;
    const ExitResult r = server_->Stop(SIGTERM);
    EXPECT_TRUE(r.exited && r.code == 0) << r.log;
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }
  void TearDown() override {
    // Whatever the test sent, a good request is still served.
    const std::vector<int8_t> images = StampedImages(1, stamps_);
    std::string json =
        R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,196,768],"parameters":{"binary_data_size":150528}}]})";
    const std::string length = std::to_string(json.size());
    json.append(reinterpret_cast<const char*>(images.data()), images.size());
    HttpResult r = HttpCall("POST", Url("/v2/models/verify/infer"), json,
                            WithHeaders({"Inference-Header-Content-Length: " + length}));
    EXPECT_EQ(r.status, 200) << r.error << r.body.substr(0, 300);
  }
  static std::string Url(const std::string& path) { return server_->http_url() + path; }
  // POST of `body` to verify's infer with optional header length.
  static HttpResult Post(const std::string& body, const std::string& header_length = "") {
    HttpOptions o;
    if (!header_length.empty())
      o.headers.push_back("Inference-Header-Content-Length: " + header_length);
    return HttpCall("POST", Url("/v2/models/verify/infer"), body, o);
  }
  static void ExpectError(const HttpResult& r, long status, const std::string& message) {
    EXPECT_EQ(r.status, status) << r.error << " " << r.body.substr(0, 300);
    EXPECT_THAT(ErrorMessage(r.body), HasSubstr(message)) << r.body.substr(0, 300);
  }

  static ServerProcess* server_;
  static std::atomic<uint64_t> stamps_;
};
ServerProcess* RestBadInputTest::server_ = nullptr;
std::atomic<uint64_t> RestBadInputTest::stamps_{0};

TEST_F(RestBadInputTest, MalformedJson) {
  ExpectError(Post(R"({"inputs": [{"name": "INPUT", )"), 400, "malformed JSON");
  ExpectError(Post("[1, 2, 3]"), 400, "must be a JSON object");
  ExpectError(Post(R"({"inputs": 7})"), 400, "inputs: missing, or not an array");
  ExpectError(Post(R"({"inputs": [{"datatype": "INT8", "shape": [1], "data": [1]}]})"), 400,
              "inputs[0].name");
  // Nesting deep enough to exhaust a recursive parser's stack.
  ExpectError(Post(std::string(200000, '[') + std::string(200000, ']')), 400,
              "must be a JSON object");
  ExpectError(Post(R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,196,768],"data":)" +
                   std::string(1000, '[') + "1" + std::string(1000, ']') + "}]}"),
              400, "nested deeper than");
}

TEST_F(RestBadInputTest, DataNotMatchingShapeOrType) {
  ExpectError(
      Post(R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,196,768],"data":[1,2,3]}]})"),
      400, "data holds 3 elements; shape [1, 196, 768] needs 150528");
  ExpectError(
      Post(R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,2],"data":[1,200]}]})"), 400,
      "data[1] = 200 is not INT8");
  ExpectError(
      Post(R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,2],"data":[1,"x"]}]})"), 400,
      "data[1] = a string is not INT8");
  // Right count and type, wrong shape for the model.
  ExpectError(Post(R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,2],"data":[1,2]}]})"),
              400, "does not match [N, 196, 768]");
  ExpectError(Post(R"({"inputs":[{"name":"INPUT","datatype":"FP16","shape":[1],"data":[1.5]}]})"),
              400, "cannot travel as JSON data");
}

TEST_F(RestBadInputTest, BinarySizesThatDoNotAddUp) {
  const std::string json =
      R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1,196,768],"parameters":{"binary_data_size":150528}}]})";
  // Only 1000 bytes follow the header.
  ExpectError(Post(json + std::string(1000, '\1'), std::to_string(json.size())), 400,
              "binary_data_size 150528 overruns the binary data: 1000 bytes remain");
  // More bytes than the inputs claim.
  ExpectError(Post(json + std::string(150528 + 10, '\1'), std::to_string(json.size())), 400,
              "10 bytes of binary data that no input");
  // The header claims more than the body holds.
  ExpectError(Post(json, "100000"), 400, "Inference-Header-Content-Length 100000 is larger");
  ExpectError(Post(json, "many"), 400, "Inference-Header-Content-Length is not a number");
  // Binary data whose header is cut inside the JSON.
  ExpectError(Post(json + std::string(150528, '\1'), "20"), 400, "malformed JSON");
}

TEST_F(RestBadInputTest, OversizedBodyIsRefusedBeforeItIsRead) {
  ExpectError(Post(std::string(kMaxInput + 1, ' ')), 413, "--http-max-input-size");
  // Announced but never sent: refused from the headers alone.
  const std::string reply = RawExchange(
      server_->http_port(),
      absl::StrCat("POST /v2/models/verify/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ",
                   kMaxInput * 4, "\r\n\r\n"),
      absl::Seconds(30));
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 413"));
  EXPECT_THAT(reply, HasSubstr("larger than"));
}

TEST_F(RestBadInputTest, ASlowClientGets408AndMemoryStaysBounded) {
  [[maybe_unused]] const long before = ResidentBytes(server_->pid());
  // Eight clients announce a body near the limit, send a little, and stall.
  std::vector<std::thread> clients;
  std::vector<std::string> replies(8);
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([i, &replies] {
      replies[i] = RawExchange(
          server_->http_port(),
          absl::StrCat("POST /v2/models/verify/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ",
                       kMaxInput - 1, "\r\n\r\n{\"inputs\": "),
          absl::Seconds(60));
    });
  }
  // Meanwhile others are served (TearDown checks one too).
  EXPECT_EQ(HttpCall("GET", Url("/v2/health/ready")).status, 200);
  for (auto& t : clients) t.join();
  for (const std::string& r : replies) {
    EXPECT_THAT(r, HasSubstr("HTTP/1.1 408"));
    EXPECT_THAT(r, HasSubstr("did not arrive within"));
  }
  // 8 x 4 MiB announced; memory follows the bytes that came, not the claims.
  [[maybe_unused]] const long after = ResidentBytes(server_->pid());
#if !defined(__SANITIZE_ADDRESS__)
  // Not under ASan: its shadow memory and quarantine grow RSS with every
  // allocation made or freed (22 MiB here once), so RSS no longer measures
  // what the server holds. The normal build checks it.
  EXPECT_LT(after - before, 8L * kMaxInput / 2) << before << " -> " << after;
#endif
  // Headers that never end.
  const std::string stalled =
      RawExchange(server_->http_port(), "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n");
  EXPECT_THAT(stalled, HasSubstr("HTTP/1.1 408"));
}

TEST_F(RestBadInputTest, MalformedHttpAndChunkedBodies) {
  EXPECT_THAT(RawExchange(server_->http_port(), "NOT HTTP AT ALL\r\n\r\n"),
              HasSubstr("HTTP/1.1 400"));
  const std::string head =
      "POST /v2/models/verify/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  // Chunks whose framing is wrong.
  std::string r = RawExchange(server_->http_port(), head + "zz\r\nhello\r\n0\r\n\r\n");
  EXPECT_THAT(r, HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(r, HasSubstr("malformed chunked body"));
  // Well framed, not JSON: the handler's own 400.
  r = RawExchange(server_->http_port(), head + "5\r\nhello\r\n0\r\n\r\n");
  EXPECT_THAT(r, HasSubstr("HTTP/1.1 400"));
  // More than --http-max-input-size in chunks: refused as it crosses the
  // limit, not after the whole body.
  r = RawExchange(server_->http_port(), head + Chunked(std::string(kMaxInput + 1, 'x'), 1 << 16));
  EXPECT_THAT(r, HasSubstr("HTTP/1.1 413"));
  EXPECT_THAT(r, HasSubstr("--http-max-input-size"));
}

TEST_F(RestBadInputTest, CompressedBodiesThatDoNotInflate) {
  const std::string json =
      R"({"inputs":[{"name":"INPUT","datatype":"INT8","shape":[1],"data":[1]}]})";
  HttpOptions o;
  o.headers = {"Content-Encoding: br"};
  ExpectError(HttpCall("POST", Url("/v2/models/verify/infer"), json, o), 415, "'br'");
  o.headers = {"Content-Encoding: gzip"};
  ExpectError(HttpCall("POST", Url("/v2/models/verify/infer"), json, o), 400, "does not inflate");
  const std::string gz = Compress("gzip", json);
  ExpectError(HttpCall("POST", Url("/v2/models/verify/infer"), gz.substr(0, gz.size() - 9), o), 400,
              "truncated");
  // A bomb: 64 MiB of zeros in about 64 KB, the limit 4 MiB.
  [[maybe_unused]] const long before = ResidentBytes(server_->pid());
  ExpectError(HttpCall("POST", Url("/v2/models/verify/infer"),
                       Compress("gzip", std::string(64 << 20, '\0')), o),
              413, "inflates to more than");
#if !defined(__SANITIZE_ADDRESS__)  // as in ASlowClientGets408AndMemoryStaysBounded
  EXPECT_LT(ResidentBytes(server_->pid()) - before, 32l << 20);
#endif
  // The JSON header's length checked against the inflated body.
  o.headers.push_back("Inference-Header-Content-Length: 100000");
  ExpectError(HttpCall("POST", Url("/v2/models/verify/infer"), gz, o), 400,
              "is larger than the body");
}

}  // namespace
}  // namespace hgpipe::testing
