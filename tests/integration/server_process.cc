#include "server_process.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

extern char** environ;

namespace hgpipe::testing {
namespace {

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string NewLogPath() {
  static int counter = 0;
  return absl::StrCat(Env("TMPDIR", "/tmp"), "/hgpipe-test-", getpid(), "-", ++counter, ".log");
}

// Starts `binary args...` with stdout and stderr to `log_path`.
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::string& log_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, binary.c_str(), &fa, nullptr, argv.data(), environ) != 0) {
    pid = -1;
  }
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Waits for `pid` up to `timeout` without spinning hot; kills it after.
ExitResult Wait(pid_t pid, absl::Duration timeout) {
  ExitResult r;
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return r;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  r.exited = WIFEXITED(status);
  r.code = r.exited ? WEXITSTATUS(status) : -WTERMSIG(status);
  return r;
}

}  // namespace

std::string BinDir() { return Env("HGPIPE_BIN_DIR", HGPIPE_TEST_BIN_DIR); }
std::string SourceDir() { return Env("HGPIPE_SOURCE_DIR", HGPIPE_TEST_SOURCE_DIR); }

ExitResult RunToExit(const std::string& binary, const std::vector<std::string>& args,
                     absl::Duration timeout) {
  const std::string log = NewLogPath();
  const pid_t pid = Spawn(binary, args, log);
  ExitResult r;
  if (pid > 0) r = Wait(pid, timeout);
  r.log = ReadFile(log);
  unlink(log.c_str());
  return r;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::vector<std::string>& args, absl::Duration timeout) {
  std::unique_ptr<ServerProcess> p(new ServerProcess);
  p->stderr_path_ = NewLogPath();
  p->log_path_ = p->stderr_path_;
  constexpr absl::string_view kLogFile = "--log-file=";
  for (const std::string& a : args) {
    if (absl::StartsWith(a, kLogFile)) p->log_path_ = a.substr(kLogFile.size());
  }
  std::vector<std::string> all = {"--grpc-port=0", "--http-port=0", "--metrics-port=0",
                                  "--host=127.0.0.1"};
  all.insert(all.end(), args.begin(), args.end());
  p->pid_ = Spawn(BinDir() + "/hgpipe-server", all, p->stderr_path_);
  if (p->pid_ <= 0) {
    return absl::FailedPreconditionError("cannot start " + BinDir() + "/hgpipe-server");
  }
  static const std::regex kReady(
      R"(ready: grpc=\S+:(\d+) http=(?:\S+:(\d+)|off) metrics=\S+:(\d+))");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const std::string log = p->Log();
    std::smatch m;
    if (std::regex_search(log, m, kReady)) {
      p->grpc_port_ = std::stoi(m[1]);
      p->http_port_ = m[2].matched ? std::stoi(m[2]) : 0;
      p->metrics_port_ = std::stoi(m[3]);
      return p;
    }
    int status;
    if (waitpid(p->pid_, &status, WNOHANG) == p->pid_) {
      p->pid_ = -1;
      return absl::FailedPreconditionError("hgpipe-server exited at start-up:\n" + log);
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::FailedPreconditionError("hgpipe-server not ready in time:\n" + p->Log());
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  unlink(stderr_path_.c_str());
}

std::string ServerProcess::grpc_target() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

std::string ServerProcess::http_url() const {
  return absl::StrCat("http://127.0.0.1:", http_port_);
}

std::string ServerProcess::metrics_url() const {
  return absl::StrCat("http://127.0.0.1:", metrics_port_, "/metrics");
}

ExitResult ServerProcess::Stop(int signal, absl::Duration timeout) {
  ExitResult r;
  if (pid_ > 0) {
    kill(pid_, signal);
    r = Wait(pid_, timeout);
    pid_ = -1;
  }
  r.log = Log();
  return r;
}

std::string ServerProcess::Log() const {
  if (log_path_ == stderr_path_) return ReadFile(log_path_);
  return ReadFile(log_path_) + ReadFile(stderr_path_);
}

std::string WriteModelRepository(const std::string& name, const std::string& config) {
  return WriteModelRepository({{name, config}});
}

namespace {

// The repositories this process wrote, removed when it exits: every server
// reading one is a ServerProcess scoped to a test, stopped by then. Written
// from the test's main thread only.
std::vector<std::string>* RepositoriesToRemove() {
  static auto* const dirs = [] {
    auto* v = new std::vector<std::string>;
    std::atexit([] {
      for (const std::string& dir : *RepositoriesToRemove()) {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
      }
    });
    return v;
  }();
  return dirs;
}

}  // namespace

std::string WriteModelRepository(const std::vector<std::pair<std::string, std::string>>& models) {
  // A fresh directory each time: a name made of the pid alone comes back in
  // a later test process and would hold an earlier test's configs.
  std::string root = (std::filesystem::temp_directory_path() / "hgpipe-repo-XXXXXX").string();
  if (mkdtemp(root.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << root << ": " << strerror(errno);
    return root;
  }
  RepositoriesToRemove()->push_back(root);
  for (const auto& [name, config] : models) {
    std::filesystem::create_directories(std::filesystem::path(root) / name);
    std::ofstream(std::filesystem::path(root) / name / "config.pbtxt") << config;
  }
  return root;
}

absl::StatusOr<double> WaitForMetric(const std::string& url, const std::string& name,
                                     const std::string& labels,
                                     const std::function<bool(double)>& ok,
                                     absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  for (;;) {
    absl::StatusOr<std::string> body = HttpGet(url);
    if (body.ok()) {
      last = *body;
      absl::StatusOr<double> v = MetricValue(*body, name, labels);
      if (v.ok() && ok(*v)) return *v;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("waiting for ", name, "{", labels, "}; last /metrics:\n", last));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::StatusOr<std::string> HttpGet(const std::string& url) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) -> size_t {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(curl);
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK || http != 200) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": ", curl_easy_strerror(rc), " http ", http));
  }
  return body;
}

absl::StatusOr<double> MetricValue(const std::string& exposition, const std::string& name,
                                   const std::string& labels) {
  const std::string key = labels.empty() ? name : absl::StrCat(name, "{", labels, "}");
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      double v;
      if (absl::SimpleAtod(line.substr(key.size() + 1), &v)) return v;
    }
  }
  return absl::NotFoundError(absl::StrCat("no sample ", key));
}

}  // namespace hgpipe::testing
