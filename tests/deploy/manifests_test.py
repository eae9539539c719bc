#!/usr/bin/python3
"""Offline checks of deploy/: the Kubernetes manifests, compose.yaml, the
Grafana provisioning and dashboard, the Dockerfile and its entrypoint.

  /usr/bin/python3 tests/deploy/manifests_test.py      (ctest: deploy.manifests)

`kubectl apply --dry-run=client` needs an API server even for client-side
dry runs (it asks the server which kinds exist), and none runs here, so the
Kubernetes objects are checked structurally: kinds and API versions, labels
and selectors that must match, port names and numbers against the
Dockerfile, gRPC probes, the FPGA device-plugin resource, the env variables
the image's entrypoint reads, KServe runtime/service consistency, and field
names of containers, probes and pod specs (typos such as `readinesProbe`
would otherwise be silently dropped by an API server). Where kubectl is
installed, `kubectl kustomize` renders both kustomizations (that works
offline). Where docker-compose is installed, `docker-compose config`
validates compose.yaml against the Compose schema.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_common as dc  # noqa: E402

D = dc.DEPLOY_DIR
K8S = os.path.join(D, "k8s")
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
# The image's health check (gRPC health through hgpipe-client, over TLS when
# the secret is mounted): an exec probe where TLS may be on.
HEALTHCHECK_EXEC = {"command": ["/opt/hgpipe/bin/entrypoint.sh", "healthcheck"]}
IMAGE = "hgpipe-serve"
FPGA_RESOURCE = re.compile(r"^(amd\.com/xilinx_|xilinx\.com/fpga-)[A-Za-z0-9_.-]+$")

CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "envFrom",
    "ports", "resources", "livenessProbe", "readinessProbe", "startupProbe",
    "securityContext", "volumeMounts", "volumeDevices", "workingDir",
    "lifecycle", "terminationMessagePath", "terminationMessagePolicy",
    "stdin", "stdinOnce", "tty", "resizePolicy", "restartPolicy"}
PROBE_KEYS = {"grpc", "httpGet", "tcpSocket", "exec", "initialDelaySeconds",
              "periodSeconds", "timeoutSeconds", "failureThreshold",
              "successThreshold", "terminationGracePeriodSeconds"}
POD_SPEC_KEYS = {
    "containers", "initContainers", "volumes", "nodeSelector", "affinity",
    "tolerations", "securityContext", "serviceAccountName",
    "terminationGracePeriodSeconds", "priorityClassName", "hostNetwork",
    "dnsPolicy", "restartPolicy", "imagePullSecrets", "runtimeClassName",
    "topologySpreadConstraints", "automountServiceAccountToken"}
POD_SECURITY_KEYS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup",
                     "supplementalGroups", "seccompProfile", "sysctls"}
CONTAINER_SECURITY_KEYS = {"allowPrivilegeEscalation", "readOnlyRootFilesystem",
                           "capabilities", "runAsNonRoot", "runAsUser",
                           "runAsGroup", "privileged", "seccompProfile"}
PORT_KEYS = {"name", "containerPort", "protocol", "hostPort", "hostIP"}


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def read(path):
    with open(path) as f:
        return f.read()


def dockerfile():
    return read(os.path.join(D, "docker", "Dockerfile"))


def entrypoint_env():
    """The HGPIPE_* variables deploy/docker/entrypoint.sh reads."""
    return set(re.findall(r"\$\{(HGPIPE_[A-Z_]+)", read(os.path.join(D, "docker", "entrypoint.sh"))))


def image_user_uid():
    m = re.search(r"useradd[^\n]*--uid (\d+)", dockerfile())
    return int(m.group(1))


def image_repo(ref):
    """'registry/x/hgpipe-serve:tag' -> 'hgpipe-serve'."""
    return ref.rsplit("/", 1)[-1].split(":")[0].split("@")[0]


class K8sObjects:
    def __init__(self):
        self.by_file = {}
        for path in sorted(glob.glob(os.path.join(K8S, "**", "*.yaml"), recursive=True)):
            self.by_file[os.path.relpath(path, K8S)] = load_all(path)
        self.objects = [o for docs in self.by_file.values() for o in docs
                        if o.get("kind") != "Kustomization"]

    def of_kind(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind, name=None):
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]


class KubernetesManifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.k = K8sObjects()

    def check_container(self, c, where, port_names=None):
        self.assertLessEqual(set(c), CONTAINER_KEYS, f"{where}: unknown container fields")
        self.assertEqual(image_repo(c["image"]), IMAGE, f"{where}: image")
        for p in c.get("ports", []):
            self.assertLessEqual(set(p), PORT_KEYS, f"{where}: port fields")
        ports = {p["containerPort"]: p.get("name") for p in c.get("ports", [])}
        self.assertIn(GRPC_PORT, ports, f"{where}: no gRPC port")
        if port_names:
            for number, name in port_names.items():
                self.assertEqual(ports.get(number), name, f"{where}: port {number}")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            self.assertIn(probe, c, f"{where}: no {probe}")
            self.assertLessEqual(set(c[probe]), PROBE_KEYS, f"{where}: {probe} fields")
            self.assertTrue(c[probe].get("grpc") == {"port": GRPC_PORT} or
                            c[probe].get("exec") == HEALTHCHECK_EXEC,
                            f"{where}: {probe} must be the gRPC health probe on {GRPC_PORT} "
                            "or the image's healthcheck")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        self.assertLessEqual(set(env), entrypoint_env(),
                             f"{where}: env the image's entrypoint does not read")
        if "HGPIPE_GRPC_PORT" in env:
            self.assertEqual(env["HGPIPE_GRPC_PORT"], str(GRPC_PORT))
        if "HGPIPE_METRICS_PORT" in env:
            self.assertEqual(env["HGPIPE_METRICS_PORT"], str(METRICS_PORT))
        if "HGPIPE_HTTP_PORT" in env:
            self.assertIn(env["HGPIPE_HTTP_PORT"], (str(HTTP_PORT), "-1"))
            if env["HGPIPE_HTTP_PORT"] == str(HTTP_PORT):
                self.assertIn(HTTP_PORT, ports, f"{where}: HTTP port not declared")
        if "HGPIPE_BOARDS" in env:
            self.assertRegex(env["HGPIPE_BOARDS"], r"^(sim:\d+|xrt:\S+)(,\S+)*$")
        self.assertLessEqual(set(c.get("securityContext", {})), CONTAINER_SECURITY_KEYS)
        return env

    def test_every_file_is_valid_yaml_with_string_names(self):
        self.assertTrue(self.k.objects)
        for obj in self.k.objects:
            self.assertIn("apiVersion", obj)
            self.assertIsInstance(obj["metadata"]["name"], str)
            for key, value in obj["metadata"].get("labels", {}).items():
                self.assertIsInstance(value, str, f"{obj['kind']} label {key}")
            for key, value in obj["metadata"].get("annotations", {}).items():
                self.assertIsInstance(value, str, f"{obj['kind']} annotation {key}")

    def test_kinds_and_api_versions(self):
        expected = {
            ("v1", "Namespace"), ("apps/v1", "DaemonSet"), ("v1", "Service"),
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
            ("monitoring.coreos.com/v1", "PrometheusRule"),
            ("serving.kserve.io/v1alpha1", "ServingRuntime"),
            ("serving.kserve.io/v1beta1", "InferenceService")}
        self.assertEqual({(o["apiVersion"], o["kind"]) for o in self.k.objects}, expected)

    def test_kustomizations_list_every_file(self):
        for kfile in glob.glob(os.path.join(K8S, "**", "kustomization.yaml"), recursive=True):
            (kust,) = load_all(kfile)
            folder = os.path.dirname(kfile)
            listed = set(kust["resources"])
            present = {os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.yaml"))} - {"kustomization.yaml"}
            self.assertEqual(listed, present, kfile)
            self.assertEqual(kust["namespace"], "hgpipe")
            self.assertEqual([image_repo(i["name"]) for i in kust["images"]], [IMAGE])

    def test_daemonset(self):
        ds = self.k.one("DaemonSet")
        spec, pod = ds["spec"], ds["spec"]["template"]["spec"]
        labels = ds["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(spec["selector"]["matchLabels"].items() <= labels.items(),
                        "selector must match the pod template's labels")
        self.assertLessEqual(set(pod), POD_SPEC_KEYS)
        self.assertLessEqual(set(pod["securityContext"]), POD_SECURITY_KEYS)
        self.assertTrue(pod["nodeSelector"], "one server per FPGA node: a nodeSelector")
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertEqual(pod["securityContext"]["runAsUser"], image_user_uid())
        m = re.search(r"ABSL_FLAG\(int, drain_timeout_s, (\d+)", read(os.path.join(dc.SOURCE_DIR, "server", "main.cc")))
        if m:
            self.assertGreater(pod["terminationGracePeriodSeconds"], int(m.group(1)),
                               "the kubelet would kill the server while it drains")
        (c,) = pod["containers"]
        env = self.check_container(c, "DaemonSet",
                                   {HTTP_PORT: "http", GRPC_PORT: "grpc", METRICS_PORT: "metrics"})
        self.assertTrue(env["HGPIPE_BOARDS"].startswith("xrt:"))
        # TLS from a mounted secret, optional (plain text without it).
        tls = [v for v in pod["volumes"] if v.get("secret")]
        self.assertEqual(len(tls), 1, "one TLS secret volume")
        self.assertTrue(tls[0]["secret"].get("optional"), "pods start without the TLS secret")
        (tls_mount,) = [m for m in c["volumeMounts"] if m["name"] == tls[0]["name"]]
        self.assertEqual(tls_mount["mountPath"], env["HGPIPE_TLS_DIR"])
        limits = c["resources"]["limits"]
        fpga = [r for r in limits if FPGA_RESOURCE.match(r)]
        self.assertEqual(len(fpga), 1, "the FPGA device-plugin resource in limits")
        self.assertGreaterEqual(int(limits[fpga[0]]), 1)
        requests = c["resources"].get("requests", {})
        if fpga[0] in requests:
            self.assertEqual(requests[fpga[0]], limits[fpga[0]], "extended resources: requests == limits")
        mounts = {m["name"] for m in c.get("volumeMounts", [])}
        self.assertEqual(mounts, {v["name"] for v in pod.get("volumes", [])})
        model_mount = [m for m in c["volumeMounts"] if m["mountPath"] == env["HGPIPE_MODEL_REPOSITORY"]]
        self.assertEqual(len(model_mount), 1, "the model repository is mounted where HGPIPE_MODEL_REPOSITORY says")
        ann = ds["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann["prometheus.io/scrape"], "true")
        self.assertEqual(ann["prometheus.io/port"], str(METRICS_PORT))
        self.assertEqual(ann["prometheus.io/path"], "/metrics")

    def test_services_select_the_pods(self):
        ds = self.k.one("DaemonSet")
        pod_labels = ds["spec"]["template"]["metadata"]["labels"]
        container_ports = {p["name"]: p["containerPort"] for p in ds["spec"]["template"]["spec"]["containers"][0]["ports"]}
        services = self.k.of_kind("Service")
        self.assertEqual(len(services), 2)
        for svc in services:
            self.assertTrue(svc["spec"]["selector"].items() <= pod_labels.items(), svc["metadata"]["name"])
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], container_ports)
                self.assertEqual(p["port"], container_ports[p["targetPort"]])
        main = self.k.one("Service", "hgpipe-server")
        self.assertEqual({p["name"]: p["port"] for p in main["spec"]["ports"]},
                         {"http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT})
        self.assertEqual(main["metadata"]["annotations"]["prometheus.io/port"], str(METRICS_PORT))
        headless = self.k.one("Service", "hgpipe-server-headless")
        self.assertEqual(headless["spec"]["clusterIP"], "None")

    def test_service_monitor_selects_the_main_service_only(self):
        sm = self.k.one("ServiceMonitor")
        sel = sm["spec"]["selector"]

        def selects(svc):
            labels = svc["metadata"].get("labels", {})
            if not sel.get("matchLabels", {}).items() <= labels.items():
                return False
            for e in sel.get("matchExpressions", []):
                has = e["key"] in labels
                if e["operator"] == "DoesNotExist" and has:
                    return False
                if e["operator"] == "Exists" and not has:
                    return False
                if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
                    return False
                if e["operator"] == "NotIn" and labels.get(e["key"]) in e["values"]:
                    return False
            return True

        selected = [s["metadata"]["name"] for s in self.k.of_kind("Service") if selects(s)]
        self.assertEqual(selected, ["hgpipe-server"])
        svc_ports = {p["name"] for p in self.k.one("Service", "hgpipe-server")["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            self.assertIn(ep["port"], svc_ports)
            self.assertEqual(ep.get("path", "/metrics"), "/metrics")

    def test_prometheus_rule_equals_alerts_yml(self):
        rule = self.k.one("PrometheusRule")
        (alerts,) = load_all(os.path.join(D, "prometheus", "alerts.yml"))
        self.assertEqual(rule["spec"]["groups"], alerts["groups"],
                         "deploy/k8s/prometheusrule.yaml drifted from deploy/prometheus/alerts.yml")

    def test_kserve_runtime_and_inference_service(self):
        rt = self.k.one("ServingRuntime")
        isvc = self.k.one("InferenceService")
        spec = rt["spec"]
        self.assertIn("grpc-v2", spec["protocolVersions"])
        self.assertLessEqual(set(spec["protocolVersions"]), {"v1", "v2", "grpc-v2"})
        formats = {(f["name"], f.get("version")) for f in spec["supportedModelFormats"]}
        (c,) = spec["containers"]
        self.assertEqual(c["name"], "kserve-container")
        env = self.check_container(c, "ServingRuntime", {GRPC_PORT: "h2c"})
        self.assertEqual(env["HGPIPE_MODEL_REPOSITORY"], "/mnt/models",
                         "KServe's storage initializer puts the model in /mnt/models")
        self.assertEqual(spec["annotations"]["prometheus.kserve.io/port"], str(METRICS_PORT))
        model = isvc["spec"]["predictor"]["model"]
        self.assertEqual(model["runtime"], rt["metadata"]["name"])
        self.assertIn((model["modelFormat"]["name"], model["modelFormat"].get("version")), formats)
        self.assertIn(model["protocolVersion"], spec["protocolVersions"])
        self.assertRegex(model["storageUri"], r"^(pvc|s3|gs|https?|hdfs|webhdfs)://")
        self.assertEqual([(p["name"], p["containerPort"]) for p in model["ports"]], [("h2c", GRPC_PORT)])
        ds_limits = self.k.one("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        fpga = {r for r in model["resources"]["limits"] if FPGA_RESOURCE.match(r)}
        self.assertEqual(fpga, {r for r in ds_limits if FPGA_RESOURCE.match(r)},
                         "the DaemonSet and the InferenceService ask for the same board resource")

    def test_kubectl_kustomize_renders(self):
        kubectl = shutil.which("kubectl")
        if not kubectl:
            self.skipTest("kubectl not installed")
        for folder, kinds in ((K8S, {"Namespace", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule"}),
                              (os.path.join(K8S, "kserve"), {"ServingRuntime", "InferenceService"})):
            out = subprocess.run([kubectl, "kustomize", folder], capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr)
            docs = [d for d in yaml.safe_load_all(out.stdout) if d]
            self.assertEqual({d["kind"] for d in docs}, kinds)
            for d in docs:
                if d["kind"] != "Namespace":
                    self.assertEqual(d["metadata"].get("namespace"), "hgpipe", d["kind"])


class ComposeAndMonitoring(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        (cls.compose,) = load_all(os.path.join(D, "compose.yaml"))
        (cls.prom,) = load_all(os.path.join(D, "prometheus", "prometheus.yml"))

    def host_path(self, spec):
        return os.path.normpath(os.path.join(D, spec.split(":")[0]))

    def test_compose_services(self):
        s = self.compose["services"]
        self.assertEqual(set(s), {"hgpipe", "prometheus", "grafana"})
        h = s["hgpipe"]
        context = os.path.normpath(os.path.join(D, h["build"]["context"]))
        self.assertEqual(context, os.path.normpath(dc.SOURCE_DIR))
        self.assertTrue(os.path.isfile(os.path.join(context, h["build"]["dockerfile"])))
        self.assertEqual(image_repo(h["image"]), IMAGE)
        targets = {int(str(p).split(":")[-1]) for p in h["ports"]}
        self.assertEqual(targets, {HTTP_PORT, GRPC_PORT, METRICS_PORT})
        tls = [v for v in h["volumes"] if v.split(":")[1] == "/etc/hgpipe/tls"]
        self.assertEqual(len(tls), 1, "the TLS secret directory is mounted")
        self.assertTrue(os.path.isdir(self.host_path(tls[0])), tls[0])
        self.assertLessEqual(set(h.get("environment", {})), entrypoint_env())
        self.assertEqual(h["stop_signal"], "SIGTERM")
        for name in ("prometheus", "grafana"):
            for v in s[name].get("volumes", []):
                if v.startswith("."):
                    self.assertTrue(os.path.exists(self.host_path(v)), v)

    def test_prometheus_scrapes_the_compose_server(self):
        (job,) = self.prom["scrape_configs"]
        (target,) = job["static_configs"][0]["targets"]
        host, port = target.split(":")
        self.assertIn(host, self.compose["services"])
        self.assertEqual(int(port), METRICS_PORT)
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        # The rule files sit beside the config inside the container as well.
        mounts = {v.split(":")[1]: self.host_path(v) for v in self.compose["services"]["prometheus"]["volumes"]
                  if v.startswith(".")}
        config_arg = [a for a in self.compose["services"]["prometheus"]["command"] if a.startswith("--config.file=")]
        config_in_container = config_arg[0].split("=", 1)[1]
        self.assertEqual(mounts[config_in_container], os.path.join(D, "prometheus", "prometheus.yml"))
        for rule in self.prom["rule_files"]:
            in_container = os.path.join(os.path.dirname(config_in_container), rule)
            self.assertIn(in_container, mounts, f"rule file {rule} is not mounted")
            self.assertTrue(os.path.isfile(mounts[in_container]))

    def test_grafana_provisioning(self):
        g = self.compose["services"]["grafana"]
        mounts = {v.split(":")[1]: self.host_path(v) for v in g["volumes"] if v.startswith(".")}
        prov = mounts["/etc/grafana/provisioning"]
        (ds_file,) = load_all(os.path.join(prov, "datasources", "prometheus.yml"))
        (ds,) = ds_file["datasources"]
        self.assertEqual(ds["type"], "prometheus")
        m = re.match(r"http://([^:/]+):(\d+)", ds["url"])
        self.assertIn(m.group(1), self.compose["services"])
        self.assertIn(f"{m.group(2)}:{m.group(2)}", [str(p) for p in self.compose["services"][m.group(1)]["ports"]])
        (dash_file,) = load_all(os.path.join(prov, "dashboards", "hgpipe.yml"))
        (provider,) = dash_file["providers"]
        dash_dir = mounts[provider["options"]["path"]]
        self.assertTrue(os.path.isfile(os.path.join(dash_dir, "hgpipe.json")))
        home = g["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        self.assertTrue(os.path.isfile(os.path.join(mounts[os.path.dirname(home)], os.path.basename(home))))
        with open(os.path.join(dash_dir, "hgpipe.json")) as f:
            dash = json.load(f)
        (dsvar,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
        self.assertEqual(dsvar["query"], "prometheus")
        self.assertEqual(dsvar["current"]["value"], ds["uid"])

    def test_dashboard(self):
        with open(os.path.join(D, "grafana", "dashboards", "hgpipe.json")) as f:
            dash = json.load(f)
        self.assertTrue(dash["uid"])
        panels = dash["panels"]
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        cells = set()
        exprs = []
        for p in panels:
            gp = p["gridPos"]
            self.assertLessEqual(gp["x"] + gp["w"], 24, p["title"])
            for x in range(gp["x"], gp["x"] + gp["w"]):
                for y in range(gp["y"], gp["y"] + gp["h"]):
                    self.assertNotIn((x, y), cells, f"panel {p['title']!r} overlaps another")
                    cells.add((x, y))
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"}, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            self.assertEqual(len(refs), len(set(refs)), p["title"])
            self.assertTrue(p["targets"], p["title"])
            exprs += [t["expr"] for t in p["targets"]]
        text = "\n".join(exprs)
        # What the issue asks the dashboard to show.
        for needle in ["rate(hgpipe_images_total", "rate(hgpipe_board_images_total",
                       "rate(hgpipe_board_busy_seconds_total", "hgpipe_board_images_in_flight",
                       "hgpipe_queue_images", 'code!="OK"',
                       "histogram_quantile(0.99, sum by (model, le) (rate(hgpipe_request_duration_seconds_bucket"]:
            self.assertIn(needle, text)

    def test_docker_compose_config(self):
        tool = shutil.which("docker-compose")
        if not tool:
            self.skipTest("docker-compose not installed")
        out = subprocess.run([tool, "-f", os.path.join(D, "compose.yaml"), "config", "-q"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


class DockerImageDefinition(unittest.TestCase):
    def test_dockerfile(self):
        df = dockerfile()
        froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", df, re.M)
        self.assertEqual([f[1] for f in froms], ["deps", "build", "runtime"])
        self.assertIn("ARG DEBIAN_IMAGE=debian:bookworm\n", df)
        self.assertIn("ARG DEBIAN_SLIM_IMAGE=debian:bookworm-slim\n", df)
        self.assertRegex(df, r"EXPOSE\s+8000\s+8001\s+8002")
        self.assertRegex(df, r"(?m)^USER\s+hgpipe")
        self.assertRegex(df, r"(?m)^HEALTHCHECK .*\n.*entrypoint.sh healthcheck")
        self.assertRegex(read(os.path.join(D, "docker", "entrypoint.sh")),
                         r"hgpipe-client --url \S+ *\\?\n?.*health")
        self.assertIn("-DHGPIPE_BUILD_TESTS=OFF", df)
        self.assertIn("-DHGPIPE_BUILD_BENCH=OFF", df)
        self.assertIn("HGPIPE_GRPC_PORT=8001", df)
        self.assertIn("HGPIPE_METRICS_PORT=8002", df)
        runtime = df.split("AS runtime", 1)[1]
        self.assertNotRegex(runtime, r"-dev\b", "the runtime stage installs no -dev package")

    def test_entrypoint_passes_flags_the_server_defines(self):
        path = os.path.join(D, "docker", "entrypoint.sh")
        self.assertEqual(subprocess.run(["sh", "-n", path]).returncode, 0)
        self.assertTrue(os.access(path, os.X_OK), "entrypoint.sh must be executable")
        flags = set(re.findall(r"--([a-z][a-z-]+) ", read(path)))
        defined = set()
        for src in (("server", "main.cc"), ("clients", "hgpipe_client.cc")):
            text = read(os.path.join(dc.SOURCE_DIR, *src))
            defined |= {f.replace("_", "-") for f in re.findall(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)", text)}
        self.assertTrue(flags)
        self.assertLessEqual(flags, defined, "entrypoint.sh passes a flag hgpipe-server lacks")

    def test_build_packages_cover_the_cmake_modules(self):
        pkgs = {l.split("#")[0].strip() for l in read(os.path.join(D, "docker", "build-packages.txt")).splitlines()} - {""}
        # pkg-config modules and CMake packages of the non-test build -> package.
        known = {"absl": "libabsl-dev", "Protobuf": "libprotobuf-dev", "gRPC": "libgrpc++-dev",
                 "prometheus-cpp": "prometheus-cpp-dev", "libglog": "libgoogle-glog-dev",
                 "libturbojpeg": "libturbojpeg0-dev", "libjpeg": "libjpeg62-turbo-dev",
                 "spng": "libspng-dev", "libhwy": "libhwy-dev", "ZLIB": "zlib1g-dev",
                 "Threads": None, "PkgConfig": "pkg-config", "OpenMP": None,
                 "DNNL_INCLUDE_DIR": "libdnnl-dev", "DNNL_LIBRARY": "libdnnl-dev",
                 "Boost": "libboost-dev", "OpenSSL": "libssl-dev",
                 "RAPIDJSON_INCLUDE_DIR": "rapidjson-dev",
                 # only with HGPIPE_BUILD_BENCH / HGPIPE_BUILD_TESTS, both OFF in the image
                 "benchmark": None, "GTest": None}
        for cmakelists in glob.glob(os.path.join(dc.SOURCE_DIR, "**", "CMakeLists.txt"), recursive=True):
            rel = os.path.relpath(cmakelists, dc.SOURCE_DIR)
            if rel.startswith(("build", "tests", "bench", ".")) or "/build" in rel:
                continue
            src = read(cmakelists)
            for m in re.finditer(r"find_(?:package|path|library|program)\(([^\s)]+)[^)]*\bREQUIRED\b"
                                 r"|pkg_check_modules\(\w+ REQUIRED IMPORTED_TARGET ([^)]+)\)", src):
                names = [m.group(1)] if m.group(1) else m.group(2).split()
                for name in names:
                    self.assertIn(name, known, f"{rel}: new dependency {name}: add its -dev package to "
                                  "deploy/docker/build-packages.txt and to this table")
                    if known[name]:
                        self.assertIn(known[name], pkgs, f"{rel} needs {known[name]}")

    def test_dockerignore_keeps_build_trees_out(self):
        lines = read(os.path.join(dc.SOURCE_DIR, ".dockerignore")).split()
        for pattern in (".git", "build*"):
            self.assertIn(pattern, lines)


if __name__ == "__main__":
    unittest.main(verbosity=2)
