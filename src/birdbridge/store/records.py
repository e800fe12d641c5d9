"""The records of a vector store: one SQLite row per vector row, in a table the store's user describes."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from birdbridge.errors import BirdbridgeError

R = TypeVar("R")

#: Values per ``IN (...)`` query: far below SQLite's limit on host parameters.
SQL_BATCH = 500
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class RecordSchema(Generic[R]):
    """How a store's user keeps its records; the store knows nothing else about them.

    The main table ``table`` starts with ``row INTEGER PRIMARY KEY``, the row of the record's vector
    (the store keeps that true), then ``columns``: ``(name, "SQL type and constraints")``.
    ``to_values(record, position)`` turns a record given to ``VectorStore.append`` into the column
    values, in column order (raising BirdbridgeError naming the record when it is bad);
    ``from_values(row, values)`` makes the record object back from them. ``key`` names a unique
    column that identifies a record: appends refuse (or skip) records whose key is already stored.
    ``indexes`` are columns (or tuples of columns) to index. ``extra_sql`` creates the user's other
    tables (an archive's ``files`` and ``labels``); when a killed append is repaired, ``trim(conn,
    count)`` deletes their rows that belong to vector rows from ``count`` on, in the repair's
    transaction.
    """

    table: str
    columns: tuple[tuple[str, str], ...]
    to_values: Callable[[Any, int], tuple]
    from_values: Callable[[int, tuple], R]
    key: str | None = None
    indexes: tuple[str | tuple[str, ...], ...] = ()
    extra_sql: str = ""
    trim: Callable[[sqlite3.Connection, int], None] | None = None

    def __post_init__(self) -> None:
        names = [self.table, *self.names]
        for index in self.indexes:
            names += [index] if isinstance(index, str) else list(index)
        bad = [n for n in names if not _NAME.match(n)]
        if bad:
            raise BirdbridgeError(f"record schema {self.table!r}: {bad} are not SQL names")
        if "row" in self.names or len(set(self.names)) != len(self.names):
            raise BirdbridgeError(f"record schema {self.table!r}: columns must be unique and not 'row'")
        unknown = [n for n in names[len(self.names) + 1:] if n not in self.names]
        if self.key is not None and self.key not in self.names:
            unknown.append(self.key)
        if unknown:
            raise BirdbridgeError(f"record schema {self.table!r}: no columns {unknown}")

    @property
    def names(self) -> tuple[str, ...]:
        """The column names after ``row``, in order."""
        return tuple(name for name, _ in self.columns)

    def script(self) -> str:
        """The SQL that creates the main table, its indexes and the user's other tables."""
        columns = ",\n".join(f"    {name} {sql}" for name, sql in (("row", "INTEGER PRIMARY KEY"), *self.columns))
        lines = [f"CREATE TABLE IF NOT EXISTS {self.table} (\n{columns}\n);"]
        for index in self.indexes:
            cols = (index,) if isinstance(index, str) else tuple(index)
            name = f"{self.table}_{'_'.join(cols)}"
            lines.append(f"CREATE INDEX IF NOT EXISTS {name} ON {self.table}({', '.join(cols)});")
        return "\n".join(lines) + "\n" + self.extra_sql

    def insert_sql(self) -> str:
        """``INSERT`` of one main-table row: the row, then the columns."""
        names = ("row", *self.names)
        return f"INSERT INTO {self.table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def batches(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``values`` in slices of :data:`SQL_BATCH`, one ``IN (...)`` query each."""
    for start in range(0, len(values), SQL_BATCH):
        yield values[start : start + SQL_BATCH]


def placeholders(n: int) -> str:
    """``?,?,?`` for ``n`` values."""
    return ",".join("?" * n)


def match(columns: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """SQL clauses and arguments for ``column = value`` (a str or number) or ``column IN (...)`` (a sequence);
    None values are left out. The names must come from code (a RecordSchema), never from user input."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in columns.items():
        if value is None:
            continue
        if not _NAME.match(column):
            raise BirdbridgeError(f"{column!r} is not a column name")
        if isinstance(value, (str, bytes, int, float)):
            clauses.append(f"{column} = ?")
            args.append(value)
        else:
            values = list(value)
            clauses.append(f"{column} IN ({placeholders(len(values))})")
            args += values
    return clauses, args
