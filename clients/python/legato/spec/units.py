"""Human units of the spec format: durations (``90s``, ``5m``, ``1h30m``) and memory
sizes (``512Mi``, ``4Gi``, ``1G``).

Both directions live here so that the CLI (which parses what users write) and the
control plane (which validates and renders the canonical form) agree on one grammar.
"""

from __future__ import annotations

import re

__all__ = [
    "UnitError",
    "format_duration",
    "format_memory",
    "parse_duration",
    "parse_memory",
]


class UnitError(ValueError):
    """A duration or memory size that does not parse; the message says what is accepted."""


_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a sequence of ``<number><unit>`` with units d, h, m, s, ms
    (``90s``, ``5m``, ``1h30m``, ``1.5s``, ``250ms``). A bare number is refused: a
    unit must be explicit."""
    value = text.strip()
    if not _DURATION_WHOLE.fullmatch(value):
        raise UnitError(
            f"{text!r} is not a duration; write a number with a unit, like 90s, 5m, 1h30m or 250ms"
        )
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds``: ``5m``, ``1h30m``, ``1.5s``, ``250ms``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if millis % 1000:
        if millis < 1000:
            return f"{millis}ms"
        whole, frac = divmod(millis, 1000)
        head = format_duration(whole - whole % 60) if whole >= 60 else ""
        secs = f"{whole % 60}.{frac:03d}".rstrip("0")
        return f"{head if head != '0s' else ''}{secs}s"
    total = millis // 1000
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


_MEMORY_UNITS: dict[str, int] = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?")


def parse_memory(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit, binary (Ki, Mi, Gi, Ti) or
    decimal (K, M, G, T), as in Kubernetes: ``512Mi``, ``4Gi``, ``1.5G``."""
    match = _MEMORY.fullmatch(text.strip())
    if not match:
        raise UnitError(
            f"{text!r} is not a memory size; write a number with a unit, like 512Mi, 4Gi or 1G"
        )
    number, unit = match.group(1), match.group(2) or ""
    return int(float(number) * _MEMORY_UNITS[unit])


def format_memory(size: int) -> str:
    """The largest unit that divides ``size`` exactly, binary first: ``4Gi``, ``1536Mi``,
    ``1500M``."""
    for unit in ("Ti", "Gi", "Mi", "Ki", "T", "G", "M", "K"):
        if size and size % _MEMORY_UNITS[unit] == 0:
            return f"{size // _MEMORY_UNITS[unit]}{unit}"
    return str(size)
