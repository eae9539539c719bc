"""Helpers shared by the deploy tests (run with /usr/bin/python3).

Environment (set by ctest, see tests/deploy/CMakeLists.txt):
  HGPIPE_SOURCE_DIR  the source tree (default: two levels above this file)
  HGPIPE_BIN_DIR     where hgpipe-server, hgpipe-client and hgpipe-perf are
  CI                 when "true", a missing tool fails the test instead of
                     skipping it (CI must install what the tests need)
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP = 77  # ctest SKIP_RETURN_CODE

SOURCE_DIR = os.environ.get(
    "HGPIPE_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN_DIR = os.environ.get("HGPIPE_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin"))
DEPLOY_DIR = os.path.join(SOURCE_DIR, "deploy")


def require_tool(name, package):
    """Path of `name`, or exits: skip (77) normally, failure (1) in CI."""
    path = shutil.which(name) or (os.path.exists("/usr/bin/" + name) and "/usr/bin/" + name)
    if path:
        return path
    message = f"{name} not found (Debian package {package})"
    if os.environ.get("CI") == "true" or os.environ.get("HGPIPE_REQUIRE_DEPLOY_TOOLS") == "1":
        sys.exit(f"FAIL: {message}; CI must install it")
    print(f"SKIP: {message}")
    sys.exit(SKIP)


def require_binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        sys.exit(f"FAIL: {path} is missing: build it first (ninja {name})")
    return path


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


READY_RE = re.compile(
    r"hgpipe-server ready: grpc=(\S+):(\d+) http=(?:\S+:\d+|off) metrics=(\S+):(\d+)")


class Server:
    """hgpipe-server from HGPIPE_BIN_DIR on loopback, ports picked by the
    server itself (--grpc-port 0 --metrics-port 0), read from its ready line.
    It serves `models` of the source tree's repository (through a temporary
    repository of symlinks), so a heavy model added later does not slow the
    deploy tests down."""

    def __init__(self, boards="sim:2", models=("verify",), extra_args=()):
        self.binary = require_binary("hgpipe-server")
        self.repo = tempfile.TemporaryDirectory(prefix="hgpipe-repo-")
        for m in models:
            os.symlink(os.path.join(SOURCE_DIR, "models", m), os.path.join(self.repo.name, m))
        self.args = [self.binary,
                     "--model-repository", self.repo.name,
                     "--boards", boards, "--host", "127.0.0.1",
                     "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0", *extra_args]
        self.log = []
        self.proc = None
        self.grpc = self.metrics = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.log.append(line)
                m = READY_RE.search(line)
                if m and not ready.is_set():
                    self.grpc = f"127.0.0.1:{m.group(2)}"
                    self.metrics = f"127.0.0.1:{m.group(4)}"
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + 120
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("hgpipe-server did not become ready:\n" + "".join(self.log))
        return self

    def stop(self):
        """SIGTERM, then the exit code (the server drains and exits 0)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.repo.cleanup()
        return self.proc.returncode if self.proc else None

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- metrics

def parse_exposition(text):
    """Families of a Prometheus text exposition: {name: (type, set(labels))}."""
    types, labels = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
            labels.setdefault(name, set())
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?", line)
            if not m:
                continue
            sample = m.group(1)
            family = sample
            for suffix in ("_bucket", "_sum", "_count"):
                base = sample[: -len(suffix)]
                if sample.endswith(suffix) and types.get(base) in ("histogram", "summary"):
                    family = base
            names = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            labels.setdefault(family, set()).update(names - {"le", "quantile"})
    return {name: (types.get(name, "untyped"), labels.get(name, set())) for name in labels}


def series_names(families):
    """Every series name a family exposes: X for counters and gauges,
    X_bucket/X_sum/X_count for histograms (X itself is no series)."""
    out = {}
    for name, (kind, labels) in families.items():
        if kind == "histogram":
            out[name + "_bucket"] = labels | {"le"}
            out[name + "_sum"] = labels
            out[name + "_count"] = labels
        elif kind == "summary":
            out[name] = labels | {"quantile"}
            out[name + "_sum"] = labels
            out[name + "_count"] = labels
        else:
            out[name] = labels
    return out


PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan", "atan2",
}
# Series Prometheus makes itself for every target.
SYNTHETIC_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                    "scrape_samples_post_metric_relabeling", "scrape_series_added"}


def promql_selectors(expr):
    """(metric, set(label names)) for every series selector in a PromQL
    expression, and the label names used in by/without/on/ignoring clauses.

    String literals, range and subquery brackets, grouping clauses and
    function names are removed; what is left of the identifiers are metric
    names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)             # [5m], [$__rate_interval], [1h:1m]
    grouping = set()

    def take_grouping(m):
        grouping.update(x.strip() for x in m.group(2).split(",") if x.strip())
        return " "

    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                  take_grouping, text)
    selectors = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}|([a-zA-Z_:][a-zA-Z0-9_:]*)", text):
        if m.group(3) is not None:
            name, matchers = m.group(3), ""
            rest = text[m.end():].lstrip()
            if rest.startswith("(") or name.lower() in PROMQL_KEYWORDS:
                continue  # a function call or a keyword
            if re.fullmatch(r"\d.*", name):
                continue
        else:
            name, matchers = m.group(1) or "", m.group(2)
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        if not name:
            m2 = re.search(r'__name__\s*=\s*""', matchers)
            if m2:
                continue
        selectors.append((name, labels))
    return selectors, grouping
