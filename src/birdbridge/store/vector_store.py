"""The vector store: a folder of float16 unit rows (memory-mapped) and their records in SQLite.

See :mod:`birdbridge.store` for the layout and the crash-safety rules. A kind of store (the image
gallery, an audio archive) subclasses :class:`VectorStore` and sets :attr:`VectorStore.kind`: its
names, files and record schema. Writers take an exclusive ``flock`` on ``STORE/.lock``; readers never
wait for it. Every query filters on ``row < count``, so a reader is never confused by a batch that a
writer has not committed yet.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.store import search as _search
from birdbridge.store.ann import ANN_FILES, AnnSlot, ann_status
from birdbridge.store.kind import VECTORS_FILE, StoreKind
from birdbridge.store.locking import acquire_lock, remove_stale_temporaries, writer_at_work
from birdbridge.store.records import batches, placeholders
from birdbridge.utils.atomic import write_json
from birdbridge.utils.clock import now_iso
from birdbridge.utils.vectors import l2_normalize

log = logging.getLogger(__name__)

R = TypeVar("R")
S = TypeVar("S", bound="VectorStore")
#: ``also(conn, rows)``: writes of the user's other tables for the rows an append adds, in its transaction.
AlsoWrite = Callable[[sqlite3.Connection, range], None]

#: Top-level fields of the meta file that the store manages itself (see :meth:`VectorStore.update_meta`).
MANAGED_FIELDS = frozenset({"format", "version", "teacher", "dim", "count", "created", "ann"})


def teacher_meta(teacher: Any, ref: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"ref", "name", "fingerprint", "embed_dim"}`` of a loaded :class:`~birdbridge.models.teacher.Teacher`:
    the identity of the embedding space a store holds."""
    if ref is None:
        ref = teacher.folder if getattr(teacher, "folder", None) is not None else teacher.name
    return {"ref": str(ref), "name": teacher.name, "fingerprint": teacher.fingerprint,
            "embed_dim": int(teacher.embed_dim)}


def read_meta(folder: Path, kind: StoreKind) -> dict[str, Any]:
    """The meta file of a ``kind`` store in ``folder``, checked; errors say what the folder is and what to do."""
    path = Path(folder) / kind.meta_file
    if not path.is_file():
        what = "does not exist" if not Path(folder).exists() else f"is not {kind.a_noun} (no {kind.meta_file})"
        raise InputError(str(folder), what, kind.create_hint)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"unreadable ({exc})",
                         f"restore the file from a copy, or {kind.create_hint} in a new folder") from None
    if not isinstance(meta, dict) or meta.get("format") != kind.format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(str(path), f"not a birdbridge {kind.noun} (format {found!r})")
    if int(meta.get("version", 0)) > kind.version:
        raise InputError(str(path), f"{kind.noun} format version {meta['version']} is newer than this birdbridge "
                         f"reads ({kind.version})", "upgrade birdbridge")
    for name in ("teacher", "dim", "count"):
        if name not in meta:
            raise InputError(str(path), f"missing field {name!r}")
    return meta


class VectorStore(Generic[R]):
    """An embedded, serverless vector store; open with :meth:`open`, make with :meth:`create`.

    Reading is thread-safe. A store sees the rows committed when it was opened (or last
    :meth:`refresh`-ed); its own appends are visible at once. ``R`` is the type of its records.
    """

    kind: ClassVar[StoreKind]

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self._meta = meta
        self._vectors: np.ndarray = np.zeros((0, self.dim), np.float16)
        self._search_view: np.ndarray = self._vectors
        self._conn: sqlite3.Connection | None = None
        self._db_lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._write_depth = 0
        self._lock_fd: int | None = None
        self._ann_slot = AnnSlot(self.folder, self.kind.meta_file)
        self._map()

    # ------------------------------------------------------------------------------ open / create

    @classmethod
    def exists_in(cls, folder: str | os.PathLike[str]) -> bool:
        """Whether ``folder`` holds a store of this kind (its meta file)."""
        return (Path(folder).expanduser() / cls.kind.meta_file).is_file()

    @classmethod
    def open(cls: type[S], folder: str | os.PathLike[str], *, repair: bool = True) -> S:
        """Open a store: memory-maps the vectors (read-only); nothing is read eagerly.

        With ``repair`` (and write access, and no writer at work) vector bytes and records past
        ``count``, left by a write that was killed, are removed first.
        """
        folder = Path(folder).expanduser()
        store = cls(folder, read_meta(folder, cls.kind))
        if repair:
            store._try_repair()
        return store

    @classmethod
    def create(cls: type[S], folder: str | os.PathLike[str], teacher: Mapping[str, Any], dim: int) -> S:
        """Make an empty store in ``folder`` (new, empty, or left by an interrupted create) for embeddings
        of ``teacher`` (``name``, ``fingerprint``, optional ``ref`` and ``embed_dim``) with ``dim`` dimensions."""
        kind = cls.kind
        folder = Path(folder).expanduser()
        if cls.exists_in(folder):
            raise BirdbridgeError(f"{folder} is already {kind.a_noun}; {kind.exists_hint}")
        if folder.exists() and not folder.is_dir():
            raise InputError(str(folder), "is a file, not a folder", f"choose a folder for the {kind.noun}")
        if folder.is_dir():
            foreign = sorted(
                p.name for p in folder.iterdir() if p.name not in kind.own_files and not p.name.endswith(".tmp")
            )
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise InputError(str(folder), f"is not empty and not {kind.a_noun} (it holds {shown})",
                                 "choose a new or empty folder")
        dim = int(dim)
        if dim < 1:
            raise BirdbridgeError(f"{kind.noun} dimension must be positive, got {dim}")
        for name in ("name", "fingerprint"):
            if not teacher.get(name):
                raise BirdbridgeError(f"the teacher description needs a {name!r}: {dict(teacher)}")
        if int(teacher.get("embed_dim", dim)) != dim:
            raise BirdbridgeError(f"teacher {teacher['name']} has {teacher['embed_dim']} dimensions, not {dim}")
        folder.mkdir(parents=True, exist_ok=True)
        for name in (VECTORS_FILE, kind.db_file, f"{kind.db_file}-journal", *kind.files, *ANN_FILES):
            (folder / name).unlink(missing_ok=True)
        (folder / VECTORS_FILE).touch()
        with contextlib.closing(sqlite3.connect(folder / kind.db_file)) as conn, conn:
            conn.executescript(kind.schema.script())
        stamp = now_iso()
        meta = {
            "format": kind.format,
            "version": kind.version,
            "teacher": {"ref": str(teacher.get("ref", teacher["name"])), "name": teacher["name"],
                        "fingerprint": teacher["fingerprint"], "embed_dim": dim},
            "dim": dim,
            "count": 0,
            "created": stamp,
            "updated": stamp,
            "ann": None,
            "build": None,
        }
        write_json(folder / kind.meta_file, meta)  # written last: its presence marks a store
        return cls(folder, meta)

    def close(self) -> None:
        """Close the database connection (the memory map goes with the object)."""
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.folder)!r}, {len(self):,} {self.kind.item}s, dim {self.dim}, "
                f"teacher {self.teacher['name']!r})")

    # ------------------------------------------------------------------------------ properties

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the meta file as this object last read or wrote it."""
        return json.loads(json.dumps(self._meta))

    @property
    def teacher(self) -> dict[str, Any]:
        """The identity of the embedding space: ``ref``, ``name``, ``fingerprint``, ``embed_dim``."""
        return dict(self._meta["teacher"])

    @property
    def dim(self) -> int:
        return int(self._meta["dim"])

    def __len__(self) -> int:
        return int(self._meta["count"])

    @property
    def vectors(self) -> np.ndarray:
        """float16 ``[N, D]`` unit rows, a read-only ``np.memmap`` of ``vectors.f16`` (an empty array if N = 0)."""
        return self._vectors

    @property
    def search_vectors(self) -> np.ndarray:
        """The same rows as a copy-on-write map (never written): torch wants writable arrays."""
        return self._search_view

    def refresh(self) -> bool:
        """Re-read the meta file to see rows or an ANN written by another process; True if it changed."""
        meta = read_meta(self.folder, self.kind)
        if meta == self._meta:
            return False
        self._meta = meta
        self._map()
        return True

    def disk_usage(self) -> dict[str, int]:
        """Bytes per file of the folder."""
        return {p.name: p.stat().st_size for p in self.folder.iterdir() if p.is_file()}

    # ------------------------------------------------------------------------------ records

    def record(self, row: int) -> R:
        """The record of one row; IndexError if there is no such row."""
        return self.records([row])[0]

    def records(self, rows: Sequence[int] | np.ndarray) -> list[R]:
        """Records in the order of ``rows`` (drop search padding ``-1`` first); IndexError for a row out of range."""
        wanted = [int(r) for r in np.asarray(rows, dtype=np.int64).reshape(-1)]
        n = len(self)
        for r in wanted:
            if not 0 <= r < n:
                raise IndexError(f"row {r} is not in {self.kind.noun} {self.folder} ({n} rows)")
        schema = self.kind.schema
        found = {values[0]: schema.from_values(int(values[0]), values[1:])
                 for values in self.select_in("row", sorted(set(wanted)), ("row", *schema.names))}
        missing = [r for r in wanted if r not in found]
        if missing:
            raise self.damaged(f"the records of rows {missing[:5]} are missing from {self.kind.db_file}")
        return [found[r] for r in wanted]

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Run one read-only SQL statement on the records database; errors become messages about the store.
        Filter on ``row < len(store)``: rows past it are not committed."""
        with self._db_lock, self._sqlite_errors():
            return self._db().execute(sql, list(args)).fetchall()

    def select_in(self, column: str, values: Iterable[Any], columns: Sequence[str]) -> list[tuple]:
        """``columns`` of the committed main-table rows whose ``column`` is one of ``values`` (batched)."""
        values = list(dict.fromkeys(values))
        table, out = self.kind.schema.table, []
        for part in batches(values):
            sql = f"SELECT {', '.join(columns)} FROM {table} WHERE row < ? AND {column} IN ({placeholders(len(part))})"
            out += self.query(sql, [len(self), *part])
        return out

    def rows_matching(self, clauses: Sequence[str] = (), args: Sequence[Any] = ()) -> np.ndarray:
        """Sorted int64 committed rows of the main table matching every SQL clause (``?`` = ``args``), e.g. from
        :func:`birdbridge.store.records.match`; for ``search(rows=...)``."""
        where = " AND ".join(["row < ?", *clauses])
        rows = self.query(f"SELECT row FROM {self.kind.schema.table} WHERE {where} ORDER BY row", [len(self), *args])
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def present(self, keys: Iterable[Any]) -> set[Any]:
        """Of the given record keys (the schema's ``key`` column), those already stored."""
        key = self.kind.schema.key
        if key is None:
            raise BirdbridgeError(f"{self.kind.noun} records have no key column")
        return {r[0] for r in self.select_in(key, keys, (key,))}

    # ------------------------------------------------------------------------------ checks

    def check_teacher(self, teacher_meta: Mapping[str, Any] | Any, what: str) -> None:
        """Raise BirdbridgeError naming both teachers unless ``teacher_meta`` (dict or Teacher) has our fingerprint."""
        theirs = _as_teacher_dict(teacher_meta)
        ours = self._meta["teacher"]
        if theirs.get("fingerprint") == ours["fingerprint"]:
            return
        noun = self.kind.noun
        raise BirdbridgeError(
            f"{what} comes from teacher {theirs.get('name')!r} (fingerprint {theirs.get('fingerprint')}), but {noun} "
            f"{self.folder} holds {self.kind.item} embeddings of teacher {ours['name']!r} (fingerprint "
            f"{ours['fingerprint']}); embeddings of different teachers cannot be compared. Use the {noun}'s teacher "
            f"({ours.get('ref')}) or build a separate {noun}."
        )

    def check_searchable(self) -> None:
        """Raise BirdbridgeError naming the problem and its fix unless the store's build finished (``build.complete``
        in the meta file is not False)."""
        build = self._meta.get("build") or {}
        if build.get("complete") is False:
            command = self.kind.build_command
            state = (f"is being built by another process right now; search it when that `{command}` has finished"
                     if writer_at_work(self.folder) else
                     f"is unfinished: its build stopped before it completed; run the same `{command}` command again "
                     "to resume the build")
            raise BirdbridgeError(f"{self.kind.noun} {self.folder} {state}")

    def check_queries(self, queries: np.ndarray) -> np.ndarray:
        """``queries`` as float32 ``[Q, D]`` (one vector may be 1-d); errors name the store's space."""
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise BirdbridgeError(
                f"queries have shape {list(np.shape(queries))}, but {self.kind.noun} {self.folder} holds {self.dim}-d "
                f"embeddings of teacher {self._meta['teacher']['name']!r}; embed the queries into that teacher's space"
            )
        q = np.ascontiguousarray(q, dtype=np.float32)
        if not np.all(np.isfinite(q)):
            raise BirdbridgeError("queries hold NaN or Inf values")
        return q

    def check_rows(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """``rows`` sorted and unique; IndexError for one that is not stored."""
        subset = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1))
        n = len(self._search_view)
        if len(subset) and (subset[0] < 0 or subset[-1] >= n):
            bad = subset[0] if subset[0] < 0 else subset[-1]
            raise IndexError(f"row {int(bad)} is not in {self.kind.noun} {self.folder} ({n} rows)")
        return subset

    def damaged(self, problem: str) -> BirdbridgeError:
        """The error for a damaged store: what is wrong and how to rebuild it."""
        return BirdbridgeError(f"{self.kind.noun} {self.folder} is damaged: {problem}. Rebuild it with "
                               f"`{self.kind.build_command}` into a new folder.")

    # ------------------------------------------------------------------------------ search

    def search(
        self, queries: np.ndarray, k: int, *, exact: bool | None = None, rows: np.ndarray | Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product: ``(scores [Q, k] float32, rows [Q, k] int64)``, best first, padded with
        ``-inf``/``-1``; see :func:`birdbridge.store.search.search` for ``exact`` and ``rows`` (a filter)."""
        q = self.check_queries(queries)
        k = _search.check_k(k)
        return _search.search(self, q, k, exact=exact, rows=None if rows is None else self.check_rows(rows))

    def _search_exact(
        self, q: np.ndarray, k: int, rows: np.ndarray | Sequence[int] | None,
        chunk_rows: int = _search.SEARCH_CHUNK_ROWS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search alone, with a chosen chunk size (for tests and benchmarks)."""
        subset = None if rows is None else self.check_rows(rows)
        return _search.exact_top_k(self, self.check_queries(q), _search.check_k(k), subset, chunk_rows=chunk_rows)

    # ------------------------------------------------------------------------------ ANN

    def ann_status(self) -> dict[str, Any]:
        """The ANN index: ``exists``, ``up_to_date``, ``rows`` (indexed), ``count``, ``settings``, ``size_bytes``."""
        return ann_status(self.folder, self._meta.get("ann") or None, len(self))

    def ann_index(self) -> Any | None:
        """The loaded (memory-mapped) ANN index if it covers every row, else None."""
        return self._ann_slot.index(self._meta.get("ann") or None, len(self))

    _ann = ann_index  # the name tests have used

    def ann_candidates(self, queries: np.ndarray, k: int) -> np.ndarray | None:
        """Candidate rows from the ANN index if it covers every row, else None (see :class:`Searchable`)."""
        return self._ann_slot.candidates(self._meta.get("ann") or None, len(self), queries, k)

    def set_ann(self, entry: Mapping[str, Any] | None) -> None:
        """Record the ANN index in the meta file (``None`` forgets it); used by :mod:`birdbridge.store.ann`."""
        with self.write_lock():
            meta = self._reload_meta()
            meta["ann"] = dict(entry) if entry is not None else None
            self._save_meta(meta)
        self._ann_slot.forget()

    # ------------------------------------------------------------------------------ writing

    def append(
        self, vectors: np.ndarray, records: Sequence[Any], *, skip_existing: bool = False, also: AlsoWrite | None = None
    ) -> int:
        """Append ``[n, D]`` embeddings (L2-normalised on the way in, stored as float16) and their records.

        Records go through the schema's ``to_values``. With a ``key`` column, a key already stored or
        repeated in the batch is refused, naming it; with ``skip_existing`` stored keys are skipped
        instead. ``also(conn, rows)`` may write the user's other tables for the new ``rows`` (a range)
        in the records' transaction. Returns the number of rows added. Crash-safe: vectors (fsynced),
        then records (one transaction), then ``count`` in the meta file (atomic).
        """
        kind = self.kind
        schema = kind.schema
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[1] != self.dim or arr.shape[0] != len(records):
            raise BirdbridgeError(
                f"append needs [{len(records)}, {self.dim}] vectors for {len(records)} records, got {list(arr.shape)}"
            )
        values = [schema.to_values(r, i) for i, r in enumerate(records)]
        keys = None
        if schema.key is not None:
            at = schema.names.index(schema.key)
            keys = [v[at] for v in values]
            repeated = sorted(key for key, n in Counter(keys).items() if n > 1)
            if repeated:
                raise BirdbridgeError(f"{kind.item} {schema.key}s repeated in one append: {_show(repeated)}")
        unit = l2_normalize(arr, names=keys, what=f"{kind.item} embeddings")
        with self.write_lock():
            meta = self._reload_meta()
            count = int(meta["count"])
            self._repair_locked(count)
            present = self.present(keys) if keys is not None and count else set()
            if present:
                if not skip_existing:
                    raise BirdbridgeError(f"{len(present)} {kind.item} {schema.key}(s) already in {kind.noun} "
                                          f"{self.folder}: {_show(sorted(present))}")
                keep = [i for i, key in enumerate(keys or ()) if key not in present]
                values = [values[i] for i in keep]
                unit = unit[keep]
            if not values:
                return 0
            data = np.ascontiguousarray(unit.astype("<f2")).tobytes()
            with open(self.folder / VECTORS_FILE, "r+b") as fh:
                fh.seek(count * self.dim * 2)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            with self.transaction() as conn:
                conn.executemany(schema.insert_sql(), [(count + i, *v) for i, v in enumerate(values)])
                if also is not None:
                    also(conn, range(count, count + len(values)))
            meta["count"] = count + len(values)
            self._save_meta(meta)
        return len(values)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the writer lock and one database transaction (committed when the block ends, rolled back if it
        raises), for writes to the user's own tables; SQLite errors become messages about the store."""
        with self.write_lock(), self._db_lock, self._sqlite_errors():
            conn = self._db()
            with conn:
                yield conn

    def update_meta(self, **fields: Any) -> None:
        """Set top-level fields of the meta file other than the managed ones (e.g. ``build``)."""
        if MANAGED_FIELDS & fields.keys():
            raise BirdbridgeError(f"cannot set {sorted(MANAGED_FIELDS & fields.keys())} directly")
        with self.write_lock():
            meta = self._reload_meta()
            meta.update(fields)
            self._save_meta(meta)

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the store's exclusive writer lock (re-entrant within this object)."""
        with self._write_lock:
            if self._write_depth == 0:
                self._lock_fd = acquire_lock(self.folder, blocking=True)
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
                if self._write_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    # ------------------------------------------------------------------------------ internals

    def _map(self) -> None:
        n, dim = len(self), self.dim
        path = self.folder / VECTORS_FILE
        if n == 0:
            self._vectors = self._search_view = np.zeros((0, dim), np.float16)
            return
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise self.damaged(f"cannot read {VECTORS_FILE} ({exc})") from None
        if size < n * dim * 2:
            raise self.damaged(f"{VECTORS_FILE} holds {size // (dim * 2):,} rows but {self.kind.meta_file} says {n:,}")
        self._vectors = np.memmap(path, dtype="<f2", mode="r", shape=(n, dim))
        # A copy-on-write map of the same pages (never written): torch wants writable arrays.
        self._search_view = np.memmap(path, dtype="<f2", mode="c", shape=(n, dim))

    def _db(self) -> sqlite3.Connection:
        with self._db_lock:
            if self._conn is None:
                path = self.folder / self.kind.db_file
                if not path.is_file():
                    raise self.damaged(f"{self.kind.db_file} is missing")
                with self._sqlite_errors():
                    if os.access(self.folder, os.W_OK) and os.access(path, os.W_OK):
                        self._conn = sqlite3.connect(path, timeout=60, check_same_thread=False)
                    else:
                        self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60,
                                                     check_same_thread=False)
            return self._conn

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Every sqlite3 error becomes a BirdbridgeError naming the store, the problem and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            text, db, where = str(exc), self.kind.db_file, f"{self.kind.noun} {self.folder}"
            if "locked" in text or "busy" in text:
                raise BirdbridgeError(f"{where}: {db} is locked by another process ({text}); try again when that "
                                      "process has finished") from exc
            if "full" in text:
                raise BirdbridgeError(f"{where}: cannot write {db} ({text}); free some disk space and run the "
                                      "command again") from exc
            raise self.damaged(f"{db} is not a readable database ({text})") from exc

    def _reload_meta(self) -> dict[str, Any]:
        """Re-read the meta file (under the writer lock) and remap if another process appended."""
        meta = read_meta(self.folder, self.kind)
        if meta != self._meta:
            self._meta = meta
            self._map()
        return meta

    def _save_meta(self, meta: dict[str, Any]) -> None:
        meta["updated"] = now_iso()
        write_json(self.folder / self.kind.meta_file, meta)
        self._meta = meta
        self._map()

    def _try_repair(self) -> None:
        """Drop uncommitted vector bytes and records, if we can write and no writer is at work."""
        if not os.access(self.folder, os.W_OK):
            return
        try:
            fd = acquire_lock(self.folder, blocking=False)
        except OSError:
            return
        if fd is None:
            return
        try:
            meta = self._reload_meta()
            self._repair_locked(int(meta["count"]))
            remove_stale_temporaries(self.folder)
        finally:
            os.close(fd)

    def _repair_locked(self, count: int) -> None:
        """Truncate vector bytes and delete records (and, through the schema's ``trim``, rows of the user's
        other tables) past ``count``; the caller holds the writer lock."""
        kind = self.kind
        path = self.folder / VECTORS_FILE
        want = count * self.dim * 2
        size = path.stat().st_size if path.exists() else -1
        if size < want:
            held = max(size, 0) // (self.dim * 2)
            raise self.damaged(f"{VECTORS_FILE} holds {held:,} rows but {kind.meta_file} says {count:,}")
        if size > want:
            log.info("%s: dropping %d bytes of uncommitted vectors", path, size - want)
            with open(path, "r+b") as fh:
                fh.truncate(want)
                os.fsync(fh.fileno())
        table = kind.schema.table
        with self._db_lock, self._sqlite_errors():
            conn = self._db()
            last = conn.execute(f"SELECT MAX(row) FROM {table}").fetchone()[0]
            if last is not None and last >= count:
                with conn:
                    conn.execute(f"DELETE FROM {table} WHERE row >= ?", [count])
                    if kind.schema.trim is not None:
                        kind.schema.trim(conn, count)
                last = conn.execute(f"SELECT MAX(row) FROM {table}").fetchone()[0]
        if count and (last is None or last != count - 1):
            raise self.damaged(f"{kind.db_file} has records up to row {last}, but {kind.meta_file} says {count:,} rows")


def _as_teacher_dict(teacher: Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(teacher, Mapping):
        return dict(teacher)
    return {"name": getattr(teacher, "name", None), "fingerprint": getattr(teacher, "fingerprint", None)}


def _show(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
