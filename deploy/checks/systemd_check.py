"""Checks deploy/systemd, for scripts/check-deploy: ``systemd-analyze verify`` on each unit
(any message fails it: an unknown key, a bad value), ``systemd-analyze security --offline``
within an exposure threshold, and that the flags of ExecStart and the variables of the env
examples are ones `legato server --help` / `legato agent --help` list today. The units run
/opt/legato/.venv/bin/legato, which is not here: verify sees a copy whose ExecStart runs
LEGATO instead (a real legato: the project's virtualenv's).

Usage: python deploy/checks/systemd_check.py LEGATO KNOWN_SETTINGS WORK_DIR"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import dockerfile
import policy

UNITS = dockerfile.ROOT / "deploy" / "systemd"
INSTALLED = "/opt/legato/.venv/bin/legato"
# systemd-analyze security: exposure in tenths (20 = 2.0 of 10, "OK"); the units score
# about 1.6 (server) and 1.8 (agent).
THRESHOLD = 20


def _exec_start(text: str) -> list[str]:
    lines = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]
    if len(lines) != 1:
        raise SystemExit(f"expected one ExecStart= line, found {len(lines)}")
    return shlex.split(lines[0])


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    legato = str(Path(argv[0]).absolute())
    known, work = policy.KnownSettings.load(Path(argv[1])), Path(argv[2])
    work.mkdir(parents=True, exist_ok=True)
    failures = 0
    for role in ("server", "agent"):
        unit = UNITS / f"legato-{role}.service"
        text = unit.read_text()
        problems: list[str] = []
        argv_ = _exec_start(text)
        if argv_[:2] != [INSTALLED, role]:
            problems.append(f"ExecStart should run `{INSTALLED} {role}`, not {argv_}")
        flags = known.server_flags if role == "server" else known.agent_flags
        for flag in (a.split("=", 1)[0] for a in argv_[2:] if a.startswith("--")):
            if flag not in flags:
                problems.append(
                    f"ExecStart uses {flag}, which `legato {role} --help` does not list"
                )
        env_file = UNITS / f"{role}.env.example"
        names = [
            line.split("=", 1)[0]
            for line in env_file.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        ]
        for name in known.unknown(names):
            problems.append(
                f"{env_file.name}: {name} is not a setting `legato {role} --help` lists"
            )
        if f"EnvironmentFile=/etc/legato/{role}.env" not in text:
            problems.append(
                f"it should read EnvironmentFile=/etc/legato/{role}.env ({env_file.name})"
            )

        copy = work / unit.name
        copy.write_text(text.replace(INSTALLED, legato))
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
        )
        messages = (verify.stdout + verify.stderr).strip()
        if verify.returncode != 0 or messages:
            problems.append(f"systemd-analyze verify: {messages or f'exit {verify.returncode}'}")
        security = subprocess.run(
            [
                "systemd-analyze",
                "security",
                "--offline=true",
                f"--threshold={THRESHOLD}",
                str(copy),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        exposure = (security.stdout.strip().splitlines() or ["?"])[-1]
        if security.returncode != 0:
            problems.append(
                f"systemd-analyze security: {exposure.strip()} is above {THRESHOLD / 10:.1f}: "
                "put the hardening options back (systemd-analyze security --offline=true UNIT "
                "lists them)"
            )
        if problems:
            failures += 1
            print(f"FAIL {unit.name}:")
            for problem in problems:
                print(f"     - {problem}")
        else:
            print(f"ok   {unit.name}: verify clean; {exposure.strip().lstrip('→ ')}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
