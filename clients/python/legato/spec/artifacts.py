"""The message of a step output over the artifact size limit, the same whether the agent
finds it before uploading or the control plane while storing."""

from __future__ import annotations

__all__ = ["human_size", "too_large_message"]


def human_size(size: int) -> str:
    """``size`` bytes for people: 512 bytes, 3.1 MiB, 2 GiB."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "bytes":
                return f"{size} bytes"
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def too_large_message(step: str, size: int, limit: int, *, partial: bool = False) -> str:
    amount = f"more than {human_size(size)}" if partial else human_size(size)
    return (
        f"the output of step '{step}' is {amount}, over the artifact size limit of "
        f"{human_size(limit)}; make the output smaller or raise the limit "
        "(legato server --artifact-max-mb)"
    )
