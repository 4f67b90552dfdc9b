"""Functions that `function` steps of the runner's tests call. The runner finds this module
through its ``module_path``, as an agent finds user modules."""

from __future__ import annotations

from typing import Any

import pandas as pd


def keep_adults(data: pd.DataFrame, min_age: int) -> pd.DataFrame:
    return data[data["age"] >= min_age]


def join_counts(
    users: pd.DataFrame, settings: dict[str, Any], label: str = "total"
) -> dict[str, Any]:
    return {label: len(users), "region": settings["region"]}


def with_everything(data: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {"data": data is None, "inputs": sorted(inputs), "params": params}


def needs_mystery(mystery: int, data: pd.DataFrame) -> None:
    return None


def _check(value: int) -> None:
    if value > 2:
        raise ValueError(f"bad value {value}")


def explode(params: dict[str, Any]) -> None:
    for value in range(params["up_to"]):
        _check(value)


def records() -> list[dict[str, Any]]:
    return [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


async def async_total(params: dict[str, Any]) -> int:
    return int(params["a"]) + int(params["b"])
