"""A toy second user of the vector store: audio windows, no images, with ``files`` and ``labels`` tables of its own.

Used by tests/test_vector_store.py in-process and by the appender it runs (and kills) in a subprocess.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.store import RecordSchema, StoreKind, VectorStore

DIM = 8


def teacher(dim: int = DIM) -> dict[str, Any]:
    return {"ref": "toy", "name": "toy-space", "fingerprint": "7" * 32, "embed_dim": dim}


@dataclass(frozen=True)
class Window:
    row: int
    wid: str
    file: str
    start_s: float
    end_s: float
    channel: int
    site: str | None


def _window_values(record: Mapping[str, Any], position: int) -> tuple:
    if not isinstance(record, Mapping) or "file" not in record:
        raise BirdbridgeError(f"window {position} needs a file")
    file, start, end = str(record["file"]), float(record["start_s"]), float(record["end_s"])
    channel = int(record.get("channel", 0))
    return f"{file}#{start:g}#{channel}", file, start, end, channel, record.get("site")


def _trim(conn: sqlite3.Connection, count: int) -> None:
    conn.execute("DELETE FROM labels WHERE row >= ?", [count])
    conn.execute("DELETE FROM files WHERE first_row >= ?", [count])


WINDOWS = StoreKind(
    noun="archive",
    item="window",
    format="birdbridge-toy-windows",
    version=1,
    meta_file="windows.json",
    db_file="windows.sqlite",
    schema=RecordSchema(
        table="windows",
        columns=(("wid", "TEXT NOT NULL UNIQUE"), ("file", "TEXT NOT NULL"), ("start_s", "REAL NOT NULL"),
                 ("end_s", "REAL NOT NULL"), ("channel", "INTEGER NOT NULL"), ("site", "TEXT")),
        to_values=_window_values,
        from_values=lambda row, values: Window(row, *values),
        key="wid",
        indexes=("file", ("site", "channel")),
        extra_sql="CREATE TABLE IF NOT EXISTS files (file TEXT PRIMARY KEY, first_row INTEGER NOT NULL);\n"
                  "CREATE TABLE IF NOT EXISTS labels (row INTEGER NOT NULL, label TEXT NOT NULL);\n",
        trim=_trim,
    ),
    build_command="toy build",
    create_hint="make one with `toy build`",
    exists_hint="open it instead",
    ann_command="toy ann",
)


class Windows(VectorStore[Window]):
    kind = WINDOWS


def add_files_and_labels(conn: sqlite3.Connection, rows: range) -> None:
    """The ``also`` hook of an append: the files first seen in ``rows`` and an 'unreviewed' label per row."""
    span = [rows.start, rows.stop]
    conn.execute("INSERT OR IGNORE INTO files (file, first_row) SELECT file, MIN(row) FROM windows "
                 "WHERE row >= ? AND row < ? GROUP BY file", span)
    conn.execute("INSERT INTO labels (row, label) SELECT row, 'unreviewed' FROM windows WHERE row >= ? AND row < ?",
                 span)


def window_rows(start: int, n: int, dim: int = DIM) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Windows ``start .. start + n - 1`` of a fixed toy recording set: the same vectors and records every time."""
    vectors = np.stack([np.random.default_rng(i).standard_normal(dim) for i in range(start, start + n)])
    records = [{"file": f"rec{i // 7:03d}.wav", "start_s": (i % 7) * 2.5, "end_s": (i % 7) * 2.5 + 5.0,
                "channel": i % 2, "site": "ABC"[i % 3]} for i in range(start, start + n)]
    return vectors.astype(np.float32), records


# The pause of the kill-and-resume scripts (this APPENDER and archive_fixtures.BUILDER): arguments 4-6 are the pause
# point, the number of the append to pause in and the marker file to touch there; then it sleeps until killed.
PAUSE = """
point, pause_at, marker = (sys.argv[4], int(sys.argv[5]), Path(sys.argv[6])) if len(sys.argv) > 4 else (None, -1, None)
state = {"append": 0}

def pause(here):
    if here == point and state["append"] == pause_at:
        marker.touch()
        time.sleep(600)
"""

# The resumable appender run in a subprocess: `python -c APPENDER FOLDER TOTAL BATCH [PAUSE_POINT PAUSE_BATCH MARKER]`.
# It appends windows 0..TOTAL-1 in batches, skipping those already stored. With a pause point it stops, forever,
# in append number PAUSE_BATCH: after the vectors are written ("vectors"), inside the records' transaction
# ("records") or after it committed but before the count is saved ("count"), and touches MARKER, so the test
# can SIGKILL it there.
APPENDER = """
import sys, time
from pathlib import Path
import store_fixtures as fx
import birdbridge.store.vector_store as vs

folder, total, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
""" + PAUSE + """
store = fx.Windows.open(folder) if fx.Windows.exists_in(folder) else fx.Windows.create(folder, fx.teacher(), fx.DIM)
transaction, write_json = fx.Windows.transaction, vs.write_json

def paused_transaction(self):
    pause("vectors")
    return transaction(self)

def paused_write_json(target, obj):
    if target.name == fx.WINDOWS.meta_file:
        pause("count")
    write_json(target, obj)

def also(conn, rows):
    fx.add_files_and_labels(conn, rows)
    pause("records")

fx.Windows.transaction = paused_transaction
vs.write_json = paused_write_json
for start in range(0, total, batch):
    state["append"] = start // batch
    store.append(*fx.window_rows(start, min(batch, total - start)), skip_existing=True, also=also)
print(len(store))
"""
