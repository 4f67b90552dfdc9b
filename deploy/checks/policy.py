"""The rules every deployment recipe keeps, checked by scripts/check-deploy on what the tools
produce (Helm's rendered objects, ``docker compose config``'s model, the systemd units):

- every ``LEGATO_*`` variable a recipe sets is one the CLI knows today (read from the help
  of ``legato server``, ``legato agent`` and a client command), or a ``LEGATO_SECRET_*`` /
  ``LEGATO_CONNECTION_*`` name, or one of legato-healthcheck's;
- every file a setting names is mounted where it says (a Secret's key, a volume, a compose
  secret), and what is mounted is used;
- pods run as non-root on a read-only root filesystem without capabilities, with probes
  and resources; Services select pods and name their ports; compose services wait for
  what they need (depends_on conditions) and have health checks.

Each rule returns messages that name the object, the field and what to do."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "KnownSettings",
    "check_compose",
    "check_objects",
    "container_env",
    "secrets_needed",
]

HEALTHCHECK = Path(__file__).resolve().parents[1] / "docker" / "healthcheck.py"
PREFIXES = ("LEGATO_SECRET_", "LEGATO_CONNECTION_")
# Settings whose value is a file or folder the process reads.
PATH_SETTING = re.compile(
    r"^LEGATO_\w*(_FILE|_CERT|_KEY|_CA|_CONNECTIONS|_SECRETS|_NOTIFICATIONS|_WORKDIR)$"
)
POD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job"}


@dataclass(frozen=True)
class KnownSettings:
    variables: frozenset[str]
    server_flags: frozenset[str]
    agent_flags: frozenset[str]

    @classmethod
    def load(cls, path: Path) -> KnownSettings:
        """From a file of help texts, each section headed by ``== server``, ``== agent``
        or ``== client`` (scripts/check-deploy writes it)."""
        sections: dict[str, str] = {}
        current = ""
        for line in path.read_text().splitlines():
            if line.startswith("== "):
                current = line[3:].strip()
                sections[current] = ""
            else:
                sections[current] = sections.get(current, "") + line + "\n"
        missing = {"server", "agent", "client"} - set(sections)
        if missing:
            raise SystemExit(f"{path}: no help text of {sorted(missing)}")
        variables = set(re.findall(r"\bLEGATO_[A-Z0-9_]*[A-Z0-9]\b", "\n".join(sections.values())))
        variables |= set(re.findall(r"\"(LEGATO_HEALTHCHECK_[A-Z_]+)\"", HEALTHCHECK.read_text()))
        return cls(
            variables=frozenset(variables),
            server_flags=frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", sections["server"])),
            agent_flags=frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", sections["agent"])),
        )

    def unknown(self, names: Iterable[str]) -> list[str]:
        return sorted(
            n
            for n in set(names)
            if n.startswith("LEGATO_") and n not in self.variables and not n.startswith(PREFIXES)
        )


# -- Kubernetes objects ---------------------------------------------------------------


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") not in POD_KINDS:
        return None
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def _pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"].get("labels", {})
    return labels


def secrets_needed(docs: list[dict[str, Any]]) -> set[str]:
    """Names of the Secrets the objects read (the chart makes none)."""
    names: set[str] = set()
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
        for container in spec.get("containers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
    return names


def container_env(
    docs: list[dict[str, Any]], kind: str, name: str, container: str
) -> dict[str, str] | None:
    """The env of a container as name → value (``secret:NAME/KEY`` for a secretKeyRef,
    ``field:PATH`` for a fieldRef); None when there is no such container."""
    for doc in docs:
        if doc.get("kind") != kind or doc["metadata"]["name"] != name:
            continue
        spec = _pod_spec(doc)
        for item in (spec or {}).get("containers", []):
            if item["name"] != container:
                continue
            env: dict[str, str] = {}
            for entry in item.get("env", []):
                source = entry.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    env[entry["name"]] = f"secret:{ref['name']}/{ref['key']}"
                elif "fieldRef" in source:
                    env[entry["name"]] = f"field:{source['fieldRef']['fieldPath']}"
                else:
                    env[entry["name"]] = str(entry.get("value", ""))
            return env
    return None


def check_objects(docs: list[dict[str, Any]], known: KnownSettings) -> list[str]:
    problems: list[str] = []
    pods = [(doc, spec) for doc in docs if (spec := _pod_spec(doc)) is not None]
    for doc, spec in pods:
        problems += _check_pod(_name(doc), spec, known)
    for doc in docs:
        if doc.get("kind") == "Service":
            problems += _check_service(doc, pods)
        if doc.get("kind") == "PodDisruptionBudget":
            selector = doc["spec"]["selector"]["matchLabels"]
            if not any(_selects(selector, _pod_labels(d)) for d, _ in pods):
                problems.append(f"{_name(doc)}: its selector {selector} matches no pods")
    return problems


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _check_service(
    doc: dict[str, Any], pods: list[tuple[dict[str, Any], dict[str, Any]]]
) -> list[str]:
    where = _name(doc)
    selector = doc["spec"].get("selector", {})
    matched = [spec for d, spec in pods if _selects(selector, _pod_labels(d))]
    if not matched:
        return [f"{where}: its selector {selector} matches no pods"]
    problems: list[str] = []
    for port in doc["spec"]["ports"]:
        target = port.get("targetPort")
        if isinstance(target, str):
            names = {
                p.get("name")
                for spec in matched
                for c in spec["containers"]
                for p in c.get("ports", [])
            }
            if target not in names:
                problems.append(
                    f"{where}: targetPort {target!r} is no container port ({sorted(names)})"
                )
    return problems


def _check_pod(where: str, spec: dict[str, Any], known: KnownSettings) -> list[str]:
    problems: list[str] = []
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(
            f"{where}: set automountServiceAccountToken: false (Legato needs no Kubernetes API)"
        )
    security = spec.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or security.get("runAsUser") in (None, 0):
        problems.append(f"{where}: the pod must run as a non-root user (runAsNonRoot, runAsUser)")
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: use seccompProfile RuntimeDefault")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounted: set[str] = set()
    for container in spec.get("containers", []):
        cwhere = f"{where}, container {container['name']}"
        csec = container.get("securityContext", {})
        if csec.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cwhere}: set readOnlyRootFilesystem: true")
        if csec.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cwhere}: set allowPrivilegeEscalation: false")
        if "ALL" not in csec.get("capabilities", {}).get("drop", []):
            problems.append(f"{cwhere}: drop ALL capabilities")
        resources = container.get("resources", {})
        if not {"cpu", "memory"} <= set(
            resources.get("requests", {})
        ) or "memory" not in resources.get("limits", {}):
            problems.append(f"{cwhere}: give resources.requests (cpu, memory) and limits.memory")
        ports = {p.get("name") for p in container.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            spec_probe = container.get(probe)
            if not spec_probe:
                problems.append(f"{cwhere}: no {probe}")
                continue
            command = spec_probe.get("exec", {}).get("command")
            if command is not None and command[:1] != ["legato-healthcheck"]:
                problems.append(f"{cwhere}: {probe} runs {command}, not legato-healthcheck")
            http_port = spec_probe.get("httpGet", {}).get("port")
            if isinstance(http_port, str) and http_port not in ports:
                problems.append(
                    f"{cwhere}: {probe} probes port {http_port!r}, which it does not declare"
                )
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for mount_name in mounts.values():
            if mount_name not in volumes:
                problems.append(
                    f"{cwhere}: mounts volume {mount_name!r}, which the pod does not have"
                )
            mounted.add(mount_name)
        env_names = [e["name"] for e in container.get("env", [])]
        for name in known.unknown(env_names):
            problems.append(
                f"{cwhere}: {name} is not a setting `legato --help` lists "
                "(a typo, or a removed setting)"
            )
        duplicates = {n for n in env_names if env_names.count(n) > 1}
        if duplicates:
            problems.append(f"{cwhere}: env {sorted(duplicates)} set twice")
        for entry in container.get("env", []):
            if PATH_SETTING.match(entry["name"]) and "value" in entry:
                problem = _path_is_mounted(entry["name"], entry["value"], mounts, volumes)
                if problem:
                    problems.append(f"{cwhere}: {problem}")
    for name in volumes:
        if name not in mounted:
            problems.append(f"{where}: volume {name!r} is mounted by no container")
    return problems


def _path_is_mounted(
    setting: str, value: str, mounts: dict[str, str], volumes: dict[str, dict[str, Any]]
) -> str:
    path = PurePosixPath(value)
    for mount_path, volume_name in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if path == PurePosixPath(mount_path) or PurePosixPath(mount_path) in path.parents:
            volume = volumes.get(volume_name, {})
            source = volume.get("secret") or volume.get("configMap") or {}
            items = [i["path"] for i in source.get("items", [])]
            relative = path.relative_to(mount_path).as_posix()
            if items and "$(" not in relative and relative not in items:
                return (
                    f"{setting}={value}: volume {volume_name!r} mounted at {mount_path} holds "
                    f"{items}, not {relative}"
                )
            return ""
    return f"{setting}={value}: no volume is mounted there; mount the Secret or folder it names"


# -- docker compose -------------------------------------------------------------------

ONE_SHOT = {"certs"}


def check_compose(
    model: dict[str, Any], known: KnownSettings, image_env: dict[str, dict[str, str]]
) -> list[str]:
    """``model`` is ``docker compose config --format json``; ``image_env`` the ENV of each
    Dockerfile target (what a service gets without setting it)."""
    problems: list[str] = []
    targets = set(image_env)
    services: dict[str, dict[str, Any]] = model["services"]
    declared_secrets = set(model.get("secrets", {}))
    for name, service in services.items():
        where = f"compose service {name}"
        build = service.get("build")
        image = str(service.get("image", ""))
        legato = image.startswith("legato-")
        if build:
            target = build.get("target")
            if target not in targets:
                problems.append(
                    f"{where}: builds target {target!r}, which the Dockerfile lacks "
                    f"({sorted(targets)})"
                )
            elif not image.startswith(f"legato-{target}:"):
                problems.append(f"{where}: builds target {target} but is tagged {image}")
        for dependency, spec in (service.get("depends_on") or {}).items():
            if spec.get("condition") not in ("service_healthy", "service_completed_successfully"):
                problems.append(
                    f"{where}: depends_on {dependency} with condition {spec.get('condition')}; "
                    "wait for service_healthy (or service_completed_successfully)"
                )
            elif spec.get("condition") == "service_healthy" and not _has_healthcheck(
                services[dependency]
            ):
                problems.append(
                    f"{where}: waits for {dependency} to be healthy, which has no healthcheck"
                )
        if name in ONE_SHOT:
            if service.get("restart") not in ("no", None):
                problems.append(f"{where}: a one-shot job must not restart")
            continue
        if not _has_healthcheck(service):
            problems.append(f"{where}: no healthcheck")
        if legato:
            test = service["healthcheck"]["test"]
            if test[:2] != ["CMD", "legato-healthcheck"]:
                problems.append(f"{where}: its healthcheck runs {test}, not legato-healthcheck")
            if service.get("read_only") is not True:
                problems.append(f"{where}: set read_only: true")
            if "ALL" not in (service.get("cap_drop") or []):
                problems.append(f"{where}: cap_drop: [ALL]")
            if "no-new-privileges:true" not in (service.get("security_opt") or []):
                problems.append(f"{where}: security_opt: [no-new-privileges:true]")
            if str(service.get("user", "")).split(":")[0] in ("0", "root"):
                problems.append(f"{where}: runs as root")
        env: dict[str, str] = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        for variable in known.unknown(env):
            problems.append(f"{where}: {variable} is not a setting `legato --help` lists")
        targets_of_secrets = {}
        for secret in service.get("secrets") or []:
            if secret["source"] not in declared_secrets:
                problems.append(f"{where}: uses secret {secret['source']!r}, which is not declared")
            targets_of_secrets[f"/run/secrets/{secret.get('target', secret['source'])}"] = secret
        mounts = {v["target"]: v for v in service.get("volumes") or []}
        for variable, value in env.items():
            if not PATH_SETTING.match(variable) or not value.startswith("/"):
                continue
            path = PurePosixPath(value)
            if value in targets_of_secrets:
                continue
            if not any(
                path == PurePosixPath(t) or PurePosixPath(t) in path.parents for t in mounts
            ):
                problems.append(
                    f"{where}: {variable}={value} is on no volume or secret of the service"
                )
        for target, volume in mounts.items():
            if volume.get("type") == "bind":
                source = Path(volume["source"])
                if not source.exists():
                    problems.append(f"{where}: bind mount {source} (at {target}) does not exist")
        server = env.get("LEGATO_AGENT_SERVER")
        if server:
            host, _, port = server.rpartition(":")
            if host not in services:
                problems.append(
                    f"{where}: LEGATO_AGENT_SERVER={server}: no service is called {host}"
                )
            else:
                built = (services[host].get("build") or {}).get("target", "")
                defaults = image_env.get(built, {})
                listen = str(
                    (services[host].get("environment") or {}).get(
                        "LEGATO_SERVER_LISTEN", defaults.get("LEGATO_SERVER_LISTEN", "")
                    )
                )
                if listen.rpartition(":")[2] != port:
                    problems.append(f"{where}: dials port {port}, {host} listens on {listen}")
    return problems


def _has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("test")) and not check.get("disable")
