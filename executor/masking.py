"""Keeping credentials out of everything an agent sends: log lines, errors, traces, step
outputs.

A :class:`Masker` knows the agent's secret strings — each connection's full value and, for a
URL, its password — and replaces every occurrence with ``***``. The agent masks at the
source, before a line, an error or an output leaves the process, whatever produced it (a
driver's exception, the user's ``print``, a step that returns a password).

A step's outcome (``Masker.outcome``) is masked in all that the control plane stores and
shows of it: the error, the values (every string and key, at any depth), the table's
column names and text cells — ``string`` and ``binary`` columns, also inside dictionaries
(pandas categoricals), lists and structs — and its schema's metadata (where pandas keeps
column names). The table costs one memory-mapped search of its file per secret (~4 GB/s)
when the agent has secrets; only a file that holds one is read and written again, batch by
batch, keeping its layout. Maps, unions and fixed-size lists are not looked into, and the
files a step stores under ``$LEGATO_ARTIFACTS_DIR`` are sent as the step wrote them."""

from __future__ import annotations

import asyncio
import mmap
import os
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from executor.runner.task import Outcome

__all__ = ["MASK", "Masker", "safe_url"]

MASK = "***"
_MIN_SECRET = 4
"""Shorter values are not masked: replacing every ``ab`` in a log would destroy it and hide
nothing (a two-letter password is not protected by masking anyway)."""


def _secrets_of(value: str) -> list[str]:
    found = [value]
    try:
        parts = urlsplit(value)
    except ValueError:
        return found
    if parts.scheme and parts.password:
        found.append(parts.password)
        found.append(unquote(parts.password))
    return found


class Masker:
    def __init__(self, values: Iterable[str] = ()) -> None:
        secrets = {s for value in values for s in _secrets_of(value) if len(s) >= _MIN_SECRET}
        # Longest first, so that a URL is masked whole before its password is.
        self.secrets: tuple[str, ...] = tuple(sorted(secrets, key=len, reverse=True))
        """The strings masked, longest first (the order to replace them in)."""
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        )
        # Finding a URL's password finds the URL too: look only for the secrets that hold
        # no other one.
        self._probes = [
            s.encode() for s in self.secrets if not any(o != s and o in s for o in self.secrets)
        ]

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it masked, keys of objects included."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(key)): self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def found_in(self, path: Path) -> bool:
        """Whether any secret's UTF-8 bytes occur in the file (read memory-mapped, without
        a copy): a fast first look before masking a file's contents."""
        if not self._probes or path.stat().st_size == 0:
            return False
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return any(m.find(probe) != -1 for probe in self._probes)

    async def outcome(self, outcome: Outcome) -> Outcome:
        """``outcome`` with the secrets masked in everything it will send; its table file
        is masked in place, in a thread (it may be large)."""
        if not self.secrets:
            return outcome
        if outcome.table_path is not None and outcome.table_path.is_file():
            await asyncio.to_thread(self.table, outcome.table_path)
        return replace(
            outcome,
            error=self(outcome.error),
            values=self.value(outcome.values),
            columns=[replace(column, name=self(column.name)) for column in outcome.columns],
        )

    def table(self, path: Path) -> bool:
        """Mask the secrets in the Arrow IPC file at ``path`` (names, metadata, text
        cells), writing it again only when it holds one; returns whether it did."""
        if not self.found_in(path):
            return False
        reader = ipc.open_file(pa.memory_map(str(path)))
        schema = reader.schema
        masked_schema = pa.schema(
            [_masked_field(f, self) for f in schema],
            metadata={k: _masked_bytes(v, self) for k, v in (schema.metadata or {}).items()}
            or None,
        )
        changed = not masked_schema.equals(schema, check_metadata=True)
        # A new file renamed over the old one, which is memory-mapped for reading.
        partial = path.with_name(path.name + ".masked")
        try:
            with pa.OSFile(str(partial), "wb") as sink, ipc.new_file(sink, masked_schema) as out:
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    columns = [_masked_array(column, self) for column in batch.columns]
                    masked = pa.RecordBatch.from_arrays(columns, schema=masked_schema)
                    changed = changed or not masked.equals(batch)
                    out.write_batch(masked)
            if changed:
                os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return changed  # unchanged: the bytes found were not text (a number's, say)


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages that must name it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{parts.username}:{MASK}@{netloc[-1]}").geturl()


def _masked_bytes(value: bytes, mask: Masker) -> bytes:
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return value
    masked = mask(text)
    return value if masked == text else masked.encode()


def _masked_field(field: pa.Field, mask: Masker) -> pa.Field:
    return field.with_name(mask(field.name)).with_type(_masked_type(field.type, mask))


def _masked_type(kind: pa.DataType, mask: Masker) -> pa.DataType:
    """``kind`` with the names of the fields nested in it masked."""
    if pa.types.is_struct(kind):
        return pa.struct([_masked_field(kind.field(i), mask) for i in range(kind.num_fields)])
    if pa.types.is_list(kind):
        return pa.list_(_masked_field(kind.value_field, mask))
    if pa.types.is_large_list(kind):
        return pa.large_list(_masked_field(kind.value_field, mask))
    return kind


def _masked_array(array: pa.Array, mask: Masker) -> pa.Array:
    """``array`` with the secrets in its text masked, at any depth of dictionaries, lists
    and structs; arrays of other types are returned as they are."""
    kind = array.type
    if _is_text(kind):
        for secret in mask.secrets:
            array = pc.replace_substring(array, pattern=secret, replacement=MASK)
        return array
    if pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        plain = pa.large_string() if pa.types.is_string_view(kind) else pa.large_binary()
        return _masked_array(array.cast(plain), mask).cast(kind)
    if pa.types.is_dictionary(kind):
        return pa.DictionaryArray.from_arrays(
            array.indices, _masked_array(array.dictionary, mask), ordered=kind.ordered
        )
    nulls = array.is_null() if array.null_count else None
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        if array.offset:
            array = pa.concat_arrays([array])  # from_arrays wants offsets from zero
        build = pa.ListArray if pa.types.is_list(kind) else pa.LargeListArray
        values = _masked_array(array.values, mask)
        return build.from_arrays(array.offsets, values, type=_masked_type(kind, mask), mask=nulls)
    if pa.types.is_struct(kind):
        children = [_masked_array(child, mask) for child in array.flatten()]
        return pa.StructArray.from_arrays(
            children, fields=list(_masked_type(kind, mask)), mask=nulls
        )
    return array


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )
