"""Reads deploy/docker/Dockerfile and its .dockerignore the way Docker does, for
scripts/check-deploy: the stages and what each sets, the build context the ignore file
leaves, and the rules the images must keep (hadolint checks the rest).

``python deploy/checks/dockerfile.py context DEST`` copies the build context (the files the
ignore file lets through) to DEST, so the package can be built from exactly that set;
``python deploy/checks/dockerfile.py check`` checks the rules and prints what it found."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Dockerfile", "Stage", "context_files", "load", "problems"]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IGNORE = DOCKERFILE.with_name("Dockerfile.dockerignore")
TARGETS = ("server", "agent")
# What a runtime stage must not install: compilers and headers belong to build stages.
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|make|build-essential|cargo|rustc|[a-z0-9.+-]+-dev)\b"
)


@dataclass
class Stage:
    name: str
    base: str
    line: int
    instructions: list[tuple[int, str, str]] = field(default_factory=list)

    def of(self, keyword: str) -> list[tuple[int, str]]:
        return [(line, args) for line, kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, the base first."""
        chain: list[Stage] = []
        stage: Stage | None = self.stages[name]
        while stage is not None:
            chain.insert(0, stage)
            stage = self.stages.get(stage.base)
        return chain

    def base_image(self, name: str) -> str:
        return self._expand(self.chain(name)[0].base)

    def env(self, name: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for stage in self.chain(name):
            for _, args in stage.of("ENV"):
                values.update(_env_pairs(args, values))
        return values

    def last_json(self, name: str, keyword: str) -> list[str]:
        """The exec form of the last ENTRYPOINT, CMD or HEALTHCHECK CMD of a target."""
        found: list[str] = []
        for stage in self.chain(name):
            for line, args in stage.of(keyword):
                text = args
                if keyword == "HEALTHCHECK":
                    text = args[args.index("CMD") + 3 :] if "CMD" in args else "[]"
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise ValueError(
                        f"{self.path.name}:{line}: {keyword} is not in exec form "
                        f'(["program", "arg"]): {text.strip()}'
                    ) from None
                found = [str(item) for item in value]
        return found

    def _expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m[1] or m[2], m[0]), text)


def load(path: Path = DOCKERFILE) -> Dockerfile:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line, keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            parts = rest.split()
            base = parts[0]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            current = Stage(name=name, base=base, line=line)
            stages[name] = current
        elif current is None:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                args[key.strip()] = default.strip().strip('"')
        else:
            current.instructions.append((line, keyword, rest))
    return Dockerfile(path=path, args=args, stages=stages)


def _instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, KEYWORD, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[int, str, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, rest = pending.partition(" ")
        found.append((start, keyword.upper(), rest.strip()))
        pending = ""
    return found


def _env_pairs(args: str, known: dict[str, str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in shlex.split(args):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"ENV {args!r}: use the KEY=VALUE form")
        scope = {**known, **pairs}
        pairs[key] = re.sub(
            r"\$\{(\w+)\}|\$(\w+)",
            lambda m, scope=scope: scope.get(m[1] or m[2], ""),  # type: ignore[misc]
            value,
        )
    return pairs


# -- the build context ----------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclude: bool
    text: str


def _ignore_patterns(path: Path = IGNORE) -> list[_Pattern]:
    patterns: list[_Pattern] = []
    for raw in path.read_text().splitlines():
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        keep = text.startswith("!")
        body = text[1:].strip() if keep else text
        body = body.strip("/")
        regex = ""
        i = 0
        while i < len(body):
            if body.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif body.startswith("**", i):
                regex += ".*"
                i += 2
            elif body[i] == "*":
                regex += "[^/]*"
                i += 1
            elif body[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(body[i])
                i += 1
        patterns.append(_Pattern(re.compile(regex + r"(?:/.*)?"), not keep, text))
    return patterns


def _ignored(relative: str, patterns: list[_Pattern]) -> bool:
    """Docker's rule: the last pattern that matches the path (or a folder above it) wins."""
    ignored = False
    for pattern in patterns:
        if pattern.regex.fullmatch(relative):
            ignored = pattern.exclude
    return ignored


def context_files(root: Path = ROOT, ignore: Path = IGNORE) -> list[str]:
    """The files of the build context, as paths relative to ``root``."""
    patterns = _ignore_patterns(ignore)
    kept = [p.text[1:].strip().strip("/") for p in patterns if not p.exclude]
    files: list[str] = []
    for folder, dirs, names in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        base = "" if base == "." else base + "/"
        # Skip a folder the patterns leave out unless an exception may take in a file below.
        dirs[:] = sorted(
            d
            for d in dirs
            if not _ignored(base + d, patterns)
            or any(k.startswith(base + d + "/") or "*" in k for k in kept)
        )
        files.extend(base + n for n in sorted(names) if not _ignored(base + n, patterns))
    return sorted(files)


def copy_context(dest: Path) -> list[str]:
    files = context_files()
    for relative in files:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    return files


# -- the rules ------------------------------------------------------------------------


def problems(dockerfile: Dockerfile, files: list[str]) -> list[str]:
    found: list[str] = []
    name = dockerfile.path.name
    present = set(files)
    for target in TARGETS:
        if target not in dockerfile.stages:
            found.append(f"{name}: no stage `{target}` (docker build --target {target})")
            continue
        base = dockerfile.base_image(target)
        if not re.fullmatch(r"(docker\.io/(library/)?)?python:3\.11-slim(-[a-z]+)?", base):
            found.append(f"{name}: target {target} is built on {base}, not python:3.11-slim")
        chain = dockerfile.chain(target)
        users = [args for stage in chain for _, args in stage.of("USER")]
        if not users or users[-1].split(":")[0] in ("0", "root"):
            found.append(f"{name}: target {target} runs as root: end it with USER 10001:10001")
        if not dockerfile.last_json(target, "HEALTHCHECK"):
            found.append(f"{name}: target {target} has no HEALTHCHECK CMD [...]")
        entry = dockerfile.last_json(target, "ENTRYPOINT")
        cmd = dockerfile.last_json(target, "CMD")
        if entry[-1:] != ["legato"] or cmd[:1] != [target]:
            found.append(
                f"{name}: target {target} should start `legato {target}` "
                f"(ENTRYPOINT {entry}, CMD {cmd})"
            )
        for stage in chain:
            for line, args in stage.of("RUN"):
                if "pip install" in args or "pip3 install" in args:
                    found.append(
                        f"{name}:{line}: pip runs in stage {stage.name} of the runtime image "
                        f"{target}; install in a build stage and COPY --from it"
                    )
                for part in args.split("apt-get install")[1:]:
                    packages = part.split("&&")[0]
                    for hit in COMPILERS.findall(packages):
                        found.append(
                            f"{name}:{line}: stage {stage.name} of the runtime image {target} "
                            f"installs {hit}: compilers and headers belong to a build stage"
                        )
    for stage in dockerfile.stages.values():
        for line, args in stage.of("COPY"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            if any(w.startswith("--from") for w in shlex.split(args)):
                continue
            for source in words[:-1]:
                if not any(f == source or f.startswith(source.rstrip("/") + "/") for f in present):
                    found.append(
                        f"{name}:{line}: COPY {source}: not in the build context that "
                        f"{IGNORE.name} leaves; let it through with !{source}"
                    )
    for bulky in (".git/", ".venv/", "node_modules/", "ui/", "tests/", ".legato/"):
        leaked = [f for f in files if f.startswith(bulky) or f"/{bulky}" in f]
        if leaked:
            found.append(
                f"{IGNORE.name} lets {len(leaked)} files of {bulky} into the build context "
                f"(e.g. {leaked[0]}); leave them out"
            )
    return found


def main(argv: list[str]) -> int:
    if argv[:1] == ["context"] and len(argv) == 2:
        files = copy_context(Path(argv[1]))
        print(f"build context: {len(files)} files copied to {argv[1]}")
        return 0
    if argv == ["check"]:
        dockerfile = load()
        files = context_files()
        found = problems(dockerfile, files)
        for target in TARGETS:
            if target in dockerfile.stages:
                print(
                    f"target {target}: FROM {dockerfile.base_image(target)}, "
                    f"ENTRYPOINT {dockerfile.last_json(target, 'ENTRYPOINT')} "
                    f"CMD {dockerfile.last_json(target, 'CMD')}, "
                    f"HEALTHCHECK {dockerfile.last_json(target, 'HEALTHCHECK')}"
                )
        print(f"build context: {len(files)} files")
        for problem in found:
            print(f"problem: {problem}", file=sys.stderr)
        return 1 if found else 0
    print("usage: dockerfile.py check | context DEST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
