// TLS (Triton's flags) and restricted API groups over the real binary:
// certificates made with openssl, real TLS clients (gRPC's and libcurl's),
// including clients with a certificate the server does not trust.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "grpcpp/grpcpp.h"
#include "proto/grpc_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http_client.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

using ::testing::HasSubstr;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A CA, a server certificate for 127.0.0.1 / localhost and a client
// certificate signed by it; and a second, untrusted CA with its own client.
class Certificates {
 public:
  Certificates() {
    dir_ = (std::filesystem::temp_directory_path() / "hgpipe-tls-XXXXXX").string();
    if (mkdtemp(dir_.data()) == nullptr) ADD_FAILURE() << "mkdtemp";
    MakeCa("ca");
    MakeCa("rogue-ca");
    MakeLeaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    MakeLeaf("client", "ca", "extendedKeyUsage=clientAuth");
    MakeLeaf("rogue", "rogue-ca", "extendedKeyUsage=clientAuth");
  }
  ~Certificates() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string pem(const std::string& name) const { return Read(path(name)); }

 private:
  void OpenSsl(const std::vector<std::string>& args) {
    const ExitResult r = RunToExit("/usr/bin/openssl", args);
    ASSERT_TRUE(r.exited && r.code == 0) << r.log;
  }
  void MakeCa(const std::string& name) {
    OpenSsl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=hgpipe test " + name, "-keyout", path(name + ".key"), "-out",
             path(name + ".crt")});
  }
  void MakeLeaf(const std::string& name, const std::string& ca, const std::string& ext) {
    OpenSsl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name, "-keyout",
             path(name + ".key"), "-out", path(name + ".csr")});
    std::ofstream(path(name + ".ext")) << ext << "\n";
    OpenSsl({"x509", "-req", "-in", path(name + ".csr"), "-CA", path(ca + ".crt"), "-CAkey",
             path(ca + ".key"), "-CAcreateserial", "-days", "2", "-extfile", path(name + ".ext"),
             "-out", path(name + ".crt")});
  }
  std::string dir_;
};

std::unique_ptr<clients::InferenceClient> TlsClient(const std::string& target,
                                                    const Certificates& c,
                                                    const std::string& client,
                                                    const std::string& trusted_ca = "ca.crt") {
  clients::InferenceClient::Options o;
  o.timeout = absl::Seconds(10);
  o.channel.tls = true;
  o.channel.tls_root_certs = c.pem(trusted_ca);
  if (!client.empty()) {
    o.channel.tls_client_cert = c.pem(client + ".crt");
    o.channel.tls_client_key = c.pem(client + ".key");
  }
  // The certificate names 127.0.0.1; connect by that name.
  return *clients::InferenceClient::Create(target, o);
}

TEST(TlsTest, MutualTlsOnGrpcAndHttpAcceptsOnlyTrustedClients) {
  Certificates c;
  auto server = ServerProcess::Start(
      {"--grpc-use-ssl-mutual", "--grpc-server-cert=" + c.path("server.crt"),
       "--grpc-server-key=" + c.path("server.key"), "--grpc-root-cert=" + c.path("ca.crt"),
       "--http-use-ssl-mutual", "--http-server-cert=" + c.path("server.crt"),
       "--http-server-key=" + c.path("server.key"), "--http-root-cert=" + c.path("ca.crt")});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = (*server)->grpc_target();

  // gRPC: a trusted client is served; a client with a certificate from
  // another CA, or none, is refused at the handshake.
  EXPECT_TRUE(*TlsClient(target, c, "client")->Live());
  EXPECT_EQ(TlsClient(target, c, "rogue")->Live().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(TlsClient(target, c, "")->Live().status().code(), absl::StatusCode::kUnavailable);
  // A client that does not trust the server's CA refuses the server.
  EXPECT_EQ(TlsClient(target, c, "client", "rogue-ca.crt")->Live().status().code(),
            absl::StatusCode::kUnavailable);
  // Plain text on the TLS port gets nowhere.
  EXPECT_FALSE(clients::InferenceClient::Create(target)->get()->Live().ok());

  // HTTPS likewise.
  const std::string https = absl::StrCat("https://127.0.0.1:", (*server)->http_port());
  HttpOptions good{{}, c.path("ca.crt"), c.path("client.crt"), c.path("client.key")};
  HttpResult r = HttpCall("GET", https + "/v2/health/ready", "", good);
  EXPECT_EQ(r.status, 200) << r.error;
  r = HttpCall("GET", https + "/v2/models/verify", "", good);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_THAT(r.body, HasSubstr("hgpipe/verify"));
  HttpOptions rogue{{}, c.path("ca.crt"), c.path("rogue.crt"), c.path("rogue.key")};
  r = HttpCall("GET", https + "/v2/health/ready", "", rogue);
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.error.empty());
  HttpOptions none{{}, c.path("ca.crt"), "", ""};
  EXPECT_EQ(HttpCall("GET", https + "/v2/health/ready", "", none).status, 0);
  EXPECT_EQ(HttpCall("GET", (*server)->http_url() + "/v2/health/ready").status, 0);

  const ExitResult stop = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(stop.exited && stop.code == 0) << stop.log;
}

TEST(TlsTest, ServerOnlyTlsNeedsNoClientCertificate) {
  Certificates c;
  auto server = ServerProcess::Start(
      {"--grpc-use-ssl", "--grpc-server-cert=" + c.path("server.crt"),
       "--grpc-server-key=" + c.path("server.key"), "--http-use-ssl",
       "--http-server-cert=" + c.path("server.crt"), "--http-server-key=" + c.path("server.key")});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(*TlsClient((*server)->grpc_target(), c, "")->Live());
  const std::string https = absl::StrCat("https://127.0.0.1:", (*server)->http_port());
  EXPECT_EQ(HttpCall("GET", https + "/v2/health/live", "", {{}, c.path("ca.crt"), "", ""}).status,
            200);
  // Not trusting the server's CA: refused by the client.
  EXPECT_EQ(
      HttpCall("GET", https + "/v2/health/live", "", {{}, c.path("rogue-ca.crt"), "", ""}).status,
      0);
}

TEST(TlsTest, BadCertificateFlagsStopTheStart) {
  auto server = ServerProcess::Start({"--grpc-use-ssl", "--grpc-server-cert=/nonexistent.pem",
                                      "--grpc-server-key=/nonexistent.key"},
                                     absl::Seconds(30));
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("--grpc-server-cert '/nonexistent.pem'"));
  server = ServerProcess::Start({"--http-use-ssl"}, absl::Seconds(30));
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("--http-use-ssl needs --http-server-cert"));
}

TEST(RestrictedTest, RestrictedGroupsNeedTheirHeaderAndHealthStaysOpen) {
  auto server = ServerProcess::Start(
      {"--grpc-restricted-protocol=model-repository,statistics,trace:Admin-Key=s3cret",
       "--grpc-restricted-protocol=inference:infer-key=go",
       "--http-restricted-api=model-repository,model-config,logging,trace:admin-key=s3cret"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto open = *clients::InferenceClient::Create((*server)->grpc_target());
  // Health and metadata stay open.
  EXPECT_TRUE(*open->Live());
  EXPECT_TRUE(*open->Ready());
  EXPECT_TRUE(*open->ModelReady("verify"));
  EXPECT_EQ(*open->Health(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_TRUE(open->ModelMetadata("verify").ok());
  absl::StatusOr<inference::RepositoryIndexResponse> index = open->RepositoryIndex();
  EXPECT_EQ(index.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(index.status().message(), HasSubstr("triton-grpc-protocol-admin-key"));
  EXPECT_EQ(open->ModelStatistics("verify").status().code(), absl::StatusCode::kPermissionDenied);
  auto infer =
      open->Infer(*clients::MakeImageRequest("verify", clients::GenerateRandomImages(1, 1)));
  EXPECT_EQ(infer.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(infer.status().message(), HasSubstr("triton-grpc-protocol-infer-key"));

  {
    // A stream of a restricted group is refused before it reads anything.
    auto stub =
        inference::GRPCInferenceService::NewStub(clients::MakeChannel((*server)->grpc_target()));
    grpc::ClientContext ctx;
    auto stream = stub->ModelStreamInfer(&ctx);
    stream->WritesDone();
    const grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("triton-grpc-protocol-infer-key"));
  }

  clients::InferenceClient::Options o;
  o.metadata = {{"triton-grpc-protocol-admin-key", "s3cret"},
                {"triton-grpc-protocol-infer-key", "go"}};
  auto admin = *clients::InferenceClient::Create((*server)->grpc_target(), o);
  EXPECT_TRUE(admin->RepositoryIndex().ok());
  EXPECT_TRUE(admin->ModelStatistics("verify").ok());
  EXPECT_EQ(open->TraceSetting(inference::TraceSettingRequest()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(admin->TraceSetting(inference::TraceSettingRequest()).ok());
  EXPECT_TRUE(
      admin->Infer(*clients::MakeImageRequest("verify", clients::GenerateRandomImages(1, 1))).ok());
  o.metadata = {{"triton-grpc-protocol-admin-key", "wrong"}};
  EXPECT_EQ(clients::InferenceClient::Create((*server)->grpc_target(), o)
                ->get()
                ->RepositoryIndex()
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);

  const std::string url = (*server)->http_url();
  HttpResult r = HttpCall("POST", url + "/v2/repository/index", "");
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(ErrorMessage(r.body), HasSubstr("expecting header 'admin-key'"));
  EXPECT_EQ(HttpCall("GET", url + "/v2/models/verify/config").status, 403);
  EXPECT_EQ(
      HttpCall("POST", url + "/v2/repository/index", "", WithHeaders({"Admin-Key: s3cret"})).status,
      200);
  EXPECT_EQ(
      HttpCall("GET", url + "/v2/models/verify/config", "", WithHeaders({"admin-key: s3cret"}))
          .status,
      200);
  EXPECT_EQ(HttpCall("GET", url + "/v2/models/verify/config", "", WithHeaders({"admin-key: nope"}))
                .status,
            403);
  EXPECT_EQ(HttpCall("GET", url + "/v2/health/ready").status, 200);
  EXPECT_EQ(HttpCall("GET", url + "/v2/models/verify/stats").status,
            200);  // not restricted on HTTP
  EXPECT_EQ(HttpCall("POST", url + "/v2/logging", R"({"log_verbose_level":2})").status, 403);
  EXPECT_EQ(HttpCall("GET", url + "/v2/logging", "", WithHeaders({"admin-key: s3cret"})).status,
            200);
  EXPECT_EQ(HttpCall("GET", url + "/v2/trace/setting").status, 403);
  EXPECT_EQ(
      HttpCall("GET", url + "/v2/trace/setting", "", WithHeaders({"admin-key: s3cret"})).status,
      200);
  {
    // Logging is not restricted on gRPC here.
    auto stub =
        inference::GRPCInferenceService::NewStub(clients::MakeChannel((*server)->grpc_target()));
    grpc::ClientContext ctx;
    inference::LogSettingsResponse resp;
    EXPECT_TRUE(stub->LogSettings(&ctx, inference::LogSettingsRequest(), &resp).ok());
    EXPECT_EQ(resp.settings().at("log_verbose_level").uint32_param(), 0u);
  }
}

TEST(RestrictedTest, BadRestrictionFlagsStopTheStart) {
  for (const auto& [flag, message] : std::vector<std::pair<std::string, std::string>>{
           {"--http-restricted-api=health:k=v", "health stays open"},
           {"--grpc-restricted-protocol=everything:k=v", "unknown API group 'everything'"},
           {"--grpc-restricted-protocol=statistics", "expected GROUPS:KEY=VALUE"},
       }) {
    auto server = ServerProcess::Start({flag}, absl::Seconds(30));
    ASSERT_FALSE(server.ok()) << flag;
    EXPECT_THAT(server.status().message(), HasSubstr(message)) << flag;
  }
}

}  // namespace
}  // namespace hgpipe::testing
