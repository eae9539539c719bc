#!/usr/bin/python3
"""A real Prometheus (Debian's `prometheus`) scrapes a running hgpipe-server.

  /usr/bin/python3 tests/deploy/prometheus_test.py     (ctest: deploy.prometheus)

What it checks, on loopback only:
  * every metric name (and label) the Grafana dashboard and the alert rules
    use is exported by a live server's /metrics;
  * Prometheus, configured from deploy/prometheus/prometheus.yml (target and
    intervals replaced: scrape every 1 s), scrapes the server, loads
    deploy/prometheus/alerts.yml and evaluates every rule without error, and
    no alert fires on a healthy server;
  * under a known open-loop load from hgpipe-perf, the PromQL query
    sum(rate(hgpipe_images_total[15s])) through Prometheus's HTTP API returns
    the images/s hgpipe-perf measured (within a generous tolerance: the
    machine is shared), and per-board rates add up to it;
  * every dashboard query evaluates without error, and the main panels
    return data;
  * the server exits 0 on SIGTERM.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_common as dc  # noqa: E402

LOAD_RATE = 200        # requests/s, 1 image each
LOAD_SECONDS = 20
TOLERANCE = 0.25       # relative


def dashboard_exprs():
    with open(os.path.join(dc.DEPLOY_DIR, "grafana", "dashboards", "hgpipe.json")) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            # label_values(metric, label): check the metric like an expression
            m = re.match(r"label_values\((\w+)\s*,\s*(\w+)\)", q)
            if m:
                out.append((f"variable {v['name']}", f"{m.group(1)}"))
    return out


def alert_exprs():
    with open(os.path.join(dc.DEPLOY_DIR, "prometheus", "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    return [(r.get("alert") or r.get("record"), r["expr"])
            for g in rules["groups"] for r in g["rules"]]


def instantiate(expr):
    """A dashboard expression with Grafana's variables filled in."""
    return (expr.replace("$__rate_interval", "10s")
                .replace("${model}", ".*").replace("$model", ".*"))


class PrometheusTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.prometheus = dc.require_tool("prometheus", "prometheus")
        cls.perf = dc.require_binary("hgpipe-perf")
        cls.tmp = tempfile.TemporaryDirectory(prefix="hgpipe-prom-")
        cls.server = dc.Server(boards="sim:2").__enter__()
        cls.prom_proc = None
        cls.prom_log = open(os.path.join(cls.tmp.name, "prometheus.log"), "w")
        try:
            cls.start_prometheus()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def start_prometheus(cls):
        with open(os.path.join(dc.DEPLOY_DIR, "prometheus", "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [os.path.join(dc.DEPLOY_DIR, "prometheus", r)
                                for r in config["rule_files"]]
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "hgpipe-server"]
        job["static_configs"] = [{"targets": [cls.server.metrics]}]
        path = os.path.join(cls.tmp.name, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        port = dc.free_port()
        cls.prom_url = f"http://127.0.0.1:{port}"
        cls.prom_proc = subprocess.Popen(
            [cls.prometheus, f"--config.file={path}",
             f"--storage.tsdb.path={cls.tmp.name}/data",
             f"--web.listen-address=127.0.0.1:{port}",
             "--web.enable-lifecycle", "--log.level=warn"],
            stdout=cls.prom_log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            try:
                dc.http_get(cls.prom_url + "/-/ready", timeout=2)
                break
            except Exception:
                if cls.prom_proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("prometheus did not start:\n" + cls.prometheus_log())
                time.sleep(0.3)
        # Wait for the first scrapes of the server.
        cls.wait_for(lambda: cls.query('up{job="hgpipe-server"}') == [1.0], 60,
                     "the hgpipe-server target to be up")

    @classmethod
    def prometheus_log(cls):
        cls.prom_log.flush()
        with open(cls.prom_log.name) as f:
            return f.read()[-4000:]

    @classmethod
    def tearDownClass(cls):
        if cls.prom_proc and cls.prom_proc.poll() is None:
            cls.prom_proc.terminate()
            try:
                cls.prom_proc.wait(30)
            except subprocess.TimeoutExpired:
                cls.prom_proc.kill()
        cls.prom_log.close()
        cls.server_exit = cls.server.stop()
        cls.tmp.cleanup()

    # ------------------------------------------------------------ helpers
    @classmethod
    def api(cls, path, **params):
        url = f"{cls.prom_url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        body = json.loads(dc.http_get(url, timeout=30))
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    @classmethod
    def query_raw(cls, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return cls.api("query", **params)

    @classmethod
    def query(cls, expr, at=None):
        data = cls.query_raw(expr, at)
        return [float(r["value"][1]) for r in data["result"]]

    @staticmethod
    def wait_for(cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if cond():
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}")

    # -------------------------------------------------------------- tests
    def test_1_names_exist_in_live_metrics(self):
        families = dc.parse_exposition(dc.http_get(f"http://{self.server.metrics}/metrics"))
        series = dc.series_names(families)
        for name in ["hgpipe_requests_total", "hgpipe_images_total",
                     "hgpipe_request_duration_seconds", "hgpipe_queue_duration_seconds",
                     "hgpipe_device_duration_seconds", "hgpipe_queue_images",
                     "hgpipe_board_images_total", "hgpipe_board_runs_total",
                     "hgpipe_board_failed_runs_total", "hgpipe_board_run_images",
                     "hgpipe_board_images_in_flight", "hgpipe_board_busy_seconds_total",
                     "hgpipe_board_healthy"]:
            self.assertIn(name, families, "the server no longer exports " + name)
        checked = 0
        for where, expr in dashboard_exprs() + alert_exprs():
            selectors, grouping = dc.promql_selectors(expr)
            self.assertTrue(selectors, f"{where}: no metric in {expr!r}")
            used_labels = set()
            for name, labels in selectors:
                if name in dc.SYNTHETIC_SERIES:
                    used_labels |= {"job", "instance"}
                    continue
                self.assertIn(name, series,
                              f"{where}: {name!r} is not a series of the live /metrics "
                              f"(expression {expr!r})")
                self.assertLessEqual(labels, series[name] | {"job", "instance"},
                                     f"{where}: {name} has no label {labels - series[name]}")
                used_labels |= series[name]
                checked += 1
            self.assertLessEqual(grouping, used_labels | {"job", "instance"},
                                 f"{where}: grouping by a label no metric has: {expr!r}")
        self.assertGreater(checked, 20)

    def test_2_rules_loaded_and_quiet(self):
        groups = self.api("rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        self.assertEqual({name for name, _ in alert_exprs()}, set(rules))
        # Every rule evaluated without error.
        def all_evaluated():
            return all(r.get("lastEvaluation", "").startswith("2")
                       and not r["lastEvaluation"].startswith("0001")
                       for g in self.api("rules")["groups"] for r in g["rules"])

        self.wait_for(all_evaluated, 60, "every rule to evaluate")
        for g in self.api("rules")["groups"]:
            for r in g["rules"]:
                self.assertEqual(r["health"], "ok", f"{r['name']}: {r.get('lastError')}")
        firing = [a for a in self.api("alerts")["alerts"]]
        self.assertEqual(firing, [], "alerts on a healthy server")

    def test_3_images_per_second_of_a_known_load(self):
        start = time.time()
        perf = subprocess.run(
            [self.perf, "--url", self.server.grpc, "--model", "verify",
             "--rate", str(LOAD_RATE), "--arrivals", "constant",
             "--duration", str(LOAD_SECONDS), "--warmup", "2",
             "--json", "--progress=false"],
            capture_output=True, text=True, timeout=LOAD_SECONDS + 120)
        end = time.time()
        self.assertEqual(perf.returncode, 0, perf.stdout + perf.stderr)
        measured = json.loads(perf.stdout.strip().splitlines()[-1])
        load = measured["images_per_second"]
        self.assertGreater(load, LOAD_RATE * 0.5, f"hgpipe-perf could not drive the load: {measured}")
        # Let the last scrapes in, then ask about a window inside the load.
        time.sleep(3)
        at = end - 2
        self.assertGreater(at - 15, start, "the load ran shorter than the query window")
        (total,) = self.query('sum(rate(hgpipe_images_total{model="verify"}[15s]))', at)
        print(f"\nload: hgpipe-perf {load:.1f} images/s, Prometheus {total:.1f} images/s")
        self.assertAlmostEqual(total, load, delta=load * TOLERANCE)
        (boards,) = self.query('sum(rate(hgpipe_board_images_total{model="verify"}[15s]))', at)
        self.assertAlmostEqual(boards, load, delta=load * TOLERANCE)
        # Both emulated boards are used, and neither is saturated by 200/s.
        utilization = self.query('rate(hgpipe_board_busy_seconds_total{model="verify"}[15s])', at)
        self.assertEqual(len(utilization), 2)
        for u in utilization:
            self.assertGreaterEqual(u, 0.0)
            self.assertLessEqual(u, 1.0)
        self.assertGreater(sum(utilization), 0.0)
        (p99,) = self.query('histogram_quantile(0.99, sum by (le) '
                            '(rate(hgpipe_request_duration_seconds_bucket{model="verify"}[15s])))', at)
        self.assertGreater(p99, 0.0)
        (errors,) = self.query('sum(rate(hgpipe_requests_total{model="verify",code!="OK"}[15s]))', at)
        self.assertEqual(errors, 0.0)
        # Every dashboard query evaluates (instant, over the load window), and
        # the main panels show data.
        must_have_data = {"Images/s per model", "Images/s per board", "Board utilization",
                          "Images in flight per board", "Queue depth", "Request latency",
                          "Device time per run", "Requests/s by status", "Board health"}
        for title, expr in dashboard_exprs():
            data = self.query_raw(instantiate(expr), at)
            if title in must_have_data:
                self.assertTrue(data["result"], f"panel {title!r}: no data for {expr!r}")

    def test_4_alert_expressions_evaluate(self):
        for name, expr in alert_exprs():
            self.query_raw(expr)  # raises on a PromQL error


class ServerExit(unittest.TestCase):
    def test_sigterm_exits_zero(self):
        with dc.Server(boards="sim:1") as server:
            dc.http_get(f"http://{server.metrics}/metrics")
            code = server.stop()
        self.assertEqual(code, 0, "".join(server.log))


if __name__ == "__main__":
    unittest.main(verbosity=2)
