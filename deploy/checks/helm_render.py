"""Renders deploy/helm/legato with real Helm and checks what it makes, for scripts/check-deploy.

No helm binary can be installed here, but the PyPI package helm-sdkpy ships Helm 4's Go
library as a shared object (libhelm_sdkpy.so), which this module calls through ctypes.
Helm's ``template`` is not among its entry points; ``install`` is. So each scenario is a
real ``helm install`` (with the in-memory release store, HELM_DRIVER=memory) against a
small Kubernetes API served here on loopback: it answers discovery for the kinds the chart
uses and accepts what Helm creates. Helm renders the chart with its own engine and
values-schema validation exactly as on a cluster; the manifest it returns is then checked:

- by kubernetes-validate, strictly (unknown fields are errors), against the JSON schemas of
  the Kubernetes versions in KUBERNETES_VERSIONS;
- by the rules in ``policy.py`` (non-root, read-only root, probes, resources, every
  LEGATO_* variable one the CLI knows, every file a setting names mounted from a Secret);
- against the scenario's expectations (objects, Secrets it needs, env values).

Scenarios that must fail (a missing Secret name, TLS off without ``insecure``, a value of
the wrong type) must fail with their message. ``helm lint`` runs too (the library returns
its findings without their text, so a finding is reported by file and severity).

Usage: python deploy/checks/helm_render.py LIB_DIR KNOWN_SETTINGS OUT_DIR"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
import policy

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "legato"
SCENARIOS = Path(__file__).with_name("helm-scenarios.yaml")
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
FAKE_KUBE_VERSION = ("1", "33")

# Discovery the fake API server answers: group/version → [(resource, kind, namespaced)].
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("pods", "Pod", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [
        ("deployments", "Deployment", True),
        ("daemonsets", "DaemonSet", True),
        ("statefulsets", "StatefulSet", True),
    ],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "networking.k8s.io/v1": [
        ("networkpolicies", "NetworkPolicy", True),
        ("ingresses", "Ingress", True),
    ],
}


class FakeKube(ThreadingHTTPServer):
    """Just enough of the Kubernetes API for ``helm install``: discovery, 404 for objects
    that do not exist yet, and creation (recorded)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KubeHandler)
        self.created: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _KubeHandler(BaseHTTPRequestHandler):
    server: FakeKube

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._send(
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": f"{self.path} not found",
            },
        )

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/version":
            major, minor = FAKE_KUBE_VERSION
            return self._send(
                200, {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0"}
            )
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = []
            for gv in RESOURCES:
                if "/" in gv:
                    group, version = gv.split("/")
                    entry = {"groupVersion": gv, "version": version}
                    groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        gv = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
        if gv in RESOURCES:
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            listed = [
                {
                    "name": name,
                    "singularName": "",
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
                for name, kind, namespaced in RESOURCES[gv]
            ]
            return self._send(
                200,
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": gv,
                    "resources": listed,
                },
            )
        return self._not_found()

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if "json" not in self.headers.get("Content-Type", ""):
            return self._send(
                415,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 415,
                    "message": "this fake API server takes JSON, not "
                    + str(self.headers.get("Content-Type")),
                },
            )
        body = json.loads(raw)
        self.server.created.append(body)
        body.setdefault("metadata", {}).update(
            uid=str(uuid.uuid4()), resourceVersion="1", creationTimestamp="2026-01-01T00:00:00Z"
        )
        self._send(201, body)

    def do_PUT(self) -> None:
        self._not_found()

    def do_PATCH(self) -> None:
        self._not_found()


@contextmanager
def fake_kube() -> Iterator[FakeKube]:
    server = FakeKube()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Helm:
    """Helm 4's actions, from helm-sdkpy's shared library."""

    def __init__(self, lib_dir: Path) -> None:
        found = sorted(lib_dir.glob("helm_sdkpy/_lib/linux-*/libhelm_sdkpy.so"))
        if not found:
            raise SystemExit(
                f"no libhelm_sdkpy.so under {lib_dir}: scripts/check-deploy installs helm-sdkpy "
                "there (pip install --target)"
            )
        self.lib = ctypes.CDLL(str(found[0]))
        self.lib.helm_sdkpy_last_error.restype = ctypes.c_void_p
        self.lib.helm_sdkpy_version_string.restype = ctypes.c_void_p
        shim = self._string(self.lib.helm_sdkpy_version_string()) or "?"
        match = re.search(rb"helm\.sh/helm/v\d+@(v[0-9][0-9A-Za-z.+-]*)", found[0].read_bytes())
        helm = match.group(1).decode() if match else "of unknown version"
        self.version = f"Helm {helm} (the library of {shim})"

    def _string(self, pointer: int | None) -> str:
        return ctypes.string_at(pointer).decode() if pointer else ""

    def _error(self) -> str:
        return self._string(self.lib.helm_sdkpy_last_error()) or "helm failed without a message"

    def _config(self, kube_url: str, namespace: str) -> ctypes.c_ulonglong:
        kubeconfig = yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": kube_url}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        )
        handle = ctypes.c_ulonglong()
        rc = self.lib.helm_sdkpy_config_create(
            namespace.encode(), kubeconfig.encode(), b"fake", b"{}", ctypes.byref(handle)
        )
        if rc != 0:
            raise RuntimeError(f"helm configuration: {self._error()}")
        return handle

    def install(
        self, chart: Path, values: dict[str, Any], *, release: str, namespace: str
    ) -> tuple[str, list[dict[str, Any]]]:
        """The rendered manifest and the objects created; RuntimeError with Helm's message."""
        with fake_kube() as kube:
            handle = self._config(kube.url, namespace)
            result = ctypes.c_void_p()
            options = {
                "wait": False,
                "timeout_seconds": 60,
                "create_namespace": False,
                "disable_openapi_validation": True,
                "server_side_apply": "false",
            }
            rc = self.lib.helm_sdkpy_install(
                handle,
                release.encode(),
                str(chart).encode(),
                json.dumps(values).encode(),
                b"",
                json.dumps(options).encode(),
                ctypes.byref(result),
            )
            try:
                if rc != 0:
                    raise RuntimeError(self._error())
                reply = json.loads(self._string(result.value))
                return str(reply.get("manifest", "")), list(kube.created)
            finally:
                self.lib.helm_sdkpy_config_destroy(handle)

    def lint(self, chart: Path) -> list[tuple[int, str]]:
        """(severity, path) of each finding: 1 info, 2 warning, 3 error."""
        with fake_kube() as kube:
            handle = self._config(kube.url, "default")
            result = ctypes.c_void_p()
            try:
                if self.lib.helm_sdkpy_lint(handle, str(chart).encode(), ctypes.byref(result)) != 0:
                    raise RuntimeError(f"helm lint: {self._error()}")
                reply = json.loads(self._string(result.value))
            finally:
                self.lib.helm_sdkpy_config_destroy(handle)
        return [
            (int(m.get("Severity", 0)), str(m.get("Path", ""))) for m in reply.get("Messages") or []
        ]


@dataclass
class Scenario:
    name: str
    values: dict[str, Any]
    fails_with: str
    expect: dict[str, Any]


def load_scenarios(path: Path = SCENARIOS) -> list[Scenario]:
    raw = yaml.safe_load(path.read_text())
    return [
        Scenario(
            name=item["name"],
            values=item.get("values") or {},
            fails_with=item.get("fails_with", ""),
            expect=item.get("expect") or {},
        )
        for item in raw["scenarios"]
    ]


def validate_schemas(docs: list[dict[str, Any]]) -> list[str]:
    import kubernetes_validate  # type: ignore[import-not-found]  # in the tools virtualenv

    problems: list[str] = []
    for doc in docs:
        where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{where}: Kubernetes {version} schema: {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{where}: no Kubernetes {version} schema for its kind")
    return problems


def check_expectations(scenario: Scenario, docs: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    expect = scenario.expect
    kinds: dict[str, int] = {}
    for doc in docs:
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    if "kinds" in expect and kinds != expect["kinds"]:
        problems.append(f"objects {kinds}, expected {expect['kinds']}")
    if "secrets" in expect:
        needed = sorted(policy.secrets_needed(docs))
        if needed != sorted(expect["secrets"]):
            problems.append(f"needs Secrets {needed}, expected {sorted(expect['secrets'])}")
    for where, wanted in (expect.get("env") or {}).items():
        kind, name, container = where.split("/")
        found = policy.container_env(docs, kind, name, container)
        if found is None:
            problems.append(f"no container {where}")
            continue
        for key, value in wanted.items():
            if value is None and key in found:
                problems.append(f"{where}: {key} is set ({found[key]!r}) and should not be")
            elif value is not None and found.get(key) != value:
                problems.append(f"{where}: {key} is {found.get(key)!r}, expected {value!r}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("HELM_DRIVER") != "memory":
        # The Go runtime reads the environment the process started with, so start again
        # with it: releases kept in memory (not as Secrets in the fake cluster), and
        # Helm's caches and config in the output folder.
        env = {**os.environ, "HELM_DRIVER": "memory"}
        for variable in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            env[variable] = str(out.resolve() / ".helm" / variable.lower())
        os.execve(sys.executable, [sys.executable, __file__, *argv], env)
    helm = Helm(Path(argv[0]))
    known = policy.KnownSettings.load(Path(argv[1]))
    print(f"{helm.version}; schemas of Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
    failures = 0

    findings = [(s, p) for s, p in helm.lint(CHART) if s >= 2]
    for severity, path in findings:
        level = "error" if severity >= 3 else "warning"
        print(
            f"FAIL helm lint: an {level} in {path} (helm-sdkpy passes no message text; "
            "`helm lint deploy/helm/legato` with a helm binary shows it)"
        )
        failures += 1
    if not findings:
        print("ok   helm lint: no warning or error")

    for scenario in load_scenarios():
        try:
            manifest, created = helm.install(
                CHART, scenario.values, release="legato", namespace="legato"
            )
        except RuntimeError as exc:
            message = str(exc)
            if scenario.fails_with and scenario.fails_with in message:
                print(f"ok   {scenario.name}: refused as it must be: {_short(message)}")
            else:
                print(f"FAIL {scenario.name}: helm install failed: {message}")
                failures += 1
            continue
        if scenario.fails_with:
            print(f"FAIL {scenario.name}: rendered, but must fail with {scenario.fails_with!r}")
            failures += 1
            continue
        (out / f"{scenario.name}.yaml").write_text(manifest)
        docs = [d for d in yaml.safe_load_all(manifest) if d]
        problems = validate_schemas(docs)
        problems += policy.check_objects(docs, known)
        problems += check_expectations(scenario, docs)
        if len(created) != len(docs):
            problems.append(f"Helm created {len(created)} objects of the {len(docs)} it rendered")
        if problems:
            failures += 1
            print(f"FAIL {scenario.name}:")
            for problem in problems:
                print(f"     - {problem}")
        else:
            kinds = ", ".join(sorted({f"{d['kind']}" for d in docs}))
            print(f"ok   {scenario.name}: {len(docs)} objects ({kinds}), written to {out.name}/")
    return 1 if failures else 0


def _short(message: str) -> str:
    return re.sub(r"\s+", " ", message)[:220]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
