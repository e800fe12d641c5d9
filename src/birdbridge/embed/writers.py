"""Write embeddings as .npy, .parquet or .csv, atomically."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from birdbridge.embed.table import EmbeddingTable
from birdbridge.errors import BirdbridgeError
from birdbridge.utils.atomic import atomic_path, write_npy

FORMATS = (".npy", ".parquet", ".csv")


def check_format(path: str | Path) -> str:
    """The output format of ``path`` (its suffix), or a clear error for one birdbridge cannot write."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BirdbridgeError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(FORMATS)}")
    return suffix


def write_table(path: str | Path, table: EmbeddingTable) -> Path:
    """``.npy``: float32 [N, D] only. ``.parquet``: metadata columns + an ``embedding`` list column.
    ``.csv``: metadata columns + one column per dimension (``e0`` … ``e{D-1}``)."""
    path = Path(path)
    suffix = check_format(path)
    vectors = np.ascontiguousarray(table.vectors, dtype=np.float32)
    if suffix == ".npy":
        write_npy(path, vectors)
    elif suffix == ".parquet":
        _write_parquet(path, table.columns(), vectors, table.meta)
    else:
        _write_csv(path, table.columns(), vectors)
    return path


def _write_parquet(path: Path, columns: dict[str, list], vectors: np.ndarray, meta: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    arrays = {name: pa.array(values) for name, values in columns.items()}
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    arrays["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    table = pa.table(arrays)
    if meta:
        table = table.replace_schema_metadata({"birdbridge": json.dumps(meta, default=str)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_csv(path: Path, columns: dict[str, list], vectors: np.ndarray) -> None:
    names = list(columns)
    dims = [f"e{i}" for i in range(vectors.shape[1])]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names + dims)
        for i, row in enumerate(vectors):
            writer.writerow([columns[n][i] for n in names] + [f"{v:.7g}" for v in row])


def read_table(path: str | Path) -> EmbeddingTable:
    """Read back a ``.parquet`` or ``.csv`` written by ``write_table`` (``.npy`` has no names)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        data = pq.read_table(path)
        raw_meta = (data.schema.metadata or {}).get(b"birdbridge")
        meta = json.loads(raw_meta) if raw_meta else {}
        if "embedding" not in data.column_names or "name" not in data.column_names:
            raise BirdbridgeError(f"{path}: not an embeddings file (needs 'name' and 'embedding' columns)")
        vectors = np.asarray(data.column("embedding").combine_chunks().flatten(), dtype=np.float32)
        vectors = vectors.reshape(data.num_rows, -1)
        cols = {name: data.column(name).to_pylist() for name in data.column_names if name != "embedding"}
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        header, body = rows[0], rows[1:]
        dims = [i for i, h in enumerate(header) if h.startswith("e") and h[1:].isdigit()]
        vectors = np.array([[float(r[i]) for i in dims] for r in body], dtype=np.float32).reshape(len(body), -1)
        cols = {h: [r[i] for r in body] for i, h in enumerate(header) if i not in dims}
        meta = {}
    else:
        raise BirdbridgeError(f"{path}: can read .parquet or .csv embeddings, not {suffix!r}")
    starts = np.asarray(cols["start_s"], dtype=np.float64) if "start_s" in cols else None
    ends = np.asarray(cols["end_s"], dtype=np.float64) if "end_s" in cols else None
    return EmbeddingTable(vectors=vectors, names=[str(n) for n in cols["name"]], start_s=starts, end_s=ends, meta=meta)
