"""Validating OpenLineage events against the vendored JSON schemas
(``tests/openlineage_schema``): the event against ``OpenLineage.json``'s ``RunEvent``, and
every facet against the schema its ``_schemaURL`` names. ``$ref``s between the files are
resolved from a local registry, never over the network; a facet whose schema is not
vendored fails the validation (so nothing goes unchecked)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource

__all__ = ["validate_event"]

_HERE = Path(__file__).with_name("openlineage_schema")


def _registry() -> tuple[Registry[Any], dict[str, dict[str, Any]]]:
    schemas: dict[str, dict[str, Any]] = {}
    for path in [_HERE / "OpenLineage.json", *sorted((_HERE / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text())
        schemas[schema["$id"]] = schema
    registry: Registry[Any] = Registry().with_resources(
        (uri, Resource.from_contents(schema)) for uri, schema in schemas.items()
    )
    return registry, schemas


_REGISTRY, _SCHEMAS = _registry()
_CORE = next(uri for uri in _SCHEMAS if uri.endswith("/OpenLineage.json"))


def _check(instance: Any, reference: str) -> None:
    validator = Draft202012Validator(
        {"$ref": reference}, registry=_REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        shown = "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
        raise AssertionError(f"not valid against {reference}: {shown}")


def _facets(event: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    found += (event.get("run", {}).get("facets") or {}).values()
    found += (event.get("job", {}).get("facets") or {}).values()
    for key in ("inputs", "outputs"):
        for dataset in event.get(key) or []:
            found += (dataset.get("facets") or {}).values()
            found += (dataset.get("inputFacets") or {}).values()
            found += (dataset.get("outputFacets") or {}).values()
    return found


def validate_event(event: dict[str, Any]) -> None:
    """AssertionError unless ``event`` and each of its facets are valid."""
    _check(event, f"{_CORE}#/$defs/RunEvent")
    # jsonschema checks the date-time format only with rfc3339-validator installed.
    moment = datetime.fromisoformat(str(event["eventTime"]).replace("Z", "+00:00"))
    assert moment.tzinfo is not None, f"eventTime {event['eventTime']} has no time zone"
    for facet in _facets(event):
        url = str(facet.get("_schemaURL", ""))
        base = url.split("#", 1)[0]
        assert base in _SCHEMAS, f"the facet schema {url} is not vendored in {_HERE}"
        _check(facet, url)
