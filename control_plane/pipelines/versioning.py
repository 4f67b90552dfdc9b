"""Canonical form, content hash and diff of pipeline specs.

The canonical form is what a version stores: the validated spec with equivalent spellings
made equal (``4096Mi`` → ``4Gi``; ``needs``, ``inputs`` and ``outputs`` sorted), so that
applying the same pipeline twice is recognised as unchanged. The content hash is SHA-256
over the canonical proto3 JSON (sorted keys, no whitespace). Diffs compare the user-facing
form (``legato show``), so the paths they name are the ones users write."""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from legato.spec import dump_spec_yaml, format_path, spec_to_dict
from legato.spec.units import format_memory, parse_memory
from legato.v1 import spec_pb2

__all__ = ["SpecDiff", "StepChange", "canonical_json", "canonicalize", "content_hash", "diff_specs"]


def canonicalize(spec: spec_pb2.PipelineSpec) -> spec_pb2.PipelineSpec:
    """A copy of a *valid* spec in canonical form."""
    canonical = spec_pb2.PipelineSpec()
    canonical.CopyFrom(spec)
    if canonical.limits.step_memory:
        canonical.limits.step_memory = format_memory(parse_memory(canonical.limits.step_memory))
    for step in canonical.steps:
        if step.memory:
            step.memory = format_memory(parse_memory(step.memory))
        # Order carries no meaning in these lists.
        for names in (step.needs, step.inputs, step.outputs):
            ordered = sorted(names)
            del names[:]
            names.extend(ordered)
    return canonical


def canonical_json(spec: spec_pb2.PipelineSpec) -> str:
    data = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(canonical: str) -> str:
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def spec_from_json(text: str) -> spec_pb2.PipelineSpec:
    return json_format.Parse(text, spec_pb2.PipelineSpec())


@dataclass(frozen=True)
class StepChange:
    step: str
    fields: list[str]


@dataclass(frozen=True)
class SpecDiff:
    fields_changed: list[str] = field(default_factory=list)
    steps_added: list[str] = field(default_factory=list)
    steps_removed: list[str] = field(default_factory=list)
    steps_changed: list[StepChange] = field(default_factory=list)
    unified_diff: str = ""

    @property
    def identical(self) -> bool:
        return not (
            self.fields_changed or self.steps_added or self.steps_removed or self.steps_changed
        )


def diff_specs(
    old: spec_pb2.PipelineSpec,
    new: spec_pb2.PipelineSpec,
    *,
    old_label: str = "old",
    new_label: str = "new",
) -> SpecDiff:
    """Which top-level fields and which steps differ between two specs, plus a unified
    diff of their YAML."""
    old_doc, new_doc = spec_to_dict(old), spec_to_dict(new)
    old_steps = {s["name"]: s for s in old_doc.pop("steps", [])}
    new_steps = {s["name"]: s for s in new_doc.pop("steps", [])}

    fields_changed = _changed_paths(old_doc, new_doc, [])
    common = [name for name in new_steps if name in old_steps]
    if [n for n in old_steps if n in new_steps] != common:
        fields_changed.append("steps")
    steps_changed = [
        StepChange(step=name, fields=paths)
        for name in common
        if (paths := _changed_paths(old_steps[name], new_steps[name], []))
    ]
    old_yaml, new_yaml = dump_spec_yaml(old), dump_spec_yaml(new)
    text = "".join(
        difflib.unified_diff(
            old_yaml.splitlines(keepends=True),
            new_yaml.splitlines(keepends=True),
            fromfile=old_label,
            tofile=new_label,
        )
    )
    return SpecDiff(
        fields_changed=fields_changed,
        steps_added=[n for n in new_steps if n not in old_steps],
        steps_removed=[n for n in old_steps if n not in new_steps],
        steps_changed=steps_changed,
        unified_diff=text,
    )


def _changed_paths(old: Any, new: Any, prefix: list[str | int]) -> list[str]:
    """Paths of the leaves that differ. Mappings are compared key by key; lists of
    mappings of equal length item by item; other lists and scalars as a whole."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            if key not in old or key not in new:
                paths.append(format_path([*prefix, key]))
            else:
                paths.extend(_changed_paths(old[key], new[key], [*prefix, key]))
        return paths
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and all(isinstance(x, dict) for x in old + new)
    ):
        paths = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            paths.extend(_changed_paths(a, b, [*prefix, index]))
        return paths
    return [format_path(prefix)] if prefix else [""]
