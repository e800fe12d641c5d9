"""Approximate nearest-neighbour search over a store's rows: one interface, several engines.

An engine (:class:`AnnEngine`) keeps an index of inner products in its own file in the store folder:
``usearch`` (:mod:`birdbridge.store.ann_usearch`, an HNSW graph, ``ann.usearch``) or ``faiss-ivf``
(:mod:`birdbridge.store.ann_ivf`, a FAISS inverted file, ``ann.faiss``; needs ``birdbridge[faiss]``). The
index's engine, settings and how many rows it covers are recorded in the store's JSON meta file under ``"ann"``.
It is built on request or automatically once a store reaches :data:`ANN_THRESHOLD` rows; a new index is built
by :func:`default_engine` unless an engine is chosen. It is never stale: an index that covers fewer rows than
the store holds is not used (searches are exact) until :func:`build_ann` brings it up to date, adding only the
new rows (``rebuild``, another engine, or other build settings start from scratch). An index whose file does not
match its entry (engine, rows, dimension, dtype, build settings) is not used either: searches are exact and a
log line says why. Searches re-score an index's candidates exactly from the float16 rows.

Engines and settings: ``benchmarks/bench_ann.py`` and the README ("ANN engines"). At 1,000,000 clustered rows
usearch's default build (float16, ``expansion_add`` 128) takes about 20 minutes on 2 cores, the cheaper ones
lost recall; the FAISS inverted file builds in a few minutes at recall@10 >= 0.95, so it is the default where
``faiss-cpu`` is installed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from birdbridge.errors import BirdbridgeError
from birdbridge.store.ann_ivf import NPROBE_MAX, REGROW_FACTOR, FaissIvfEngine, faiss_available
from birdbridge.store.ann_usearch import UsearchEngine
from birdbridge.store.kind import ANN_FILES, StoreKind
from birdbridge.utils.atomic import atomic_path, fsync_path
from birdbridge.utils.clock import now_iso

log = logging.getLogger(__name__)

#: Stores with at least this many rows get an ANN index automatically when built or added to.
ANN_THRESHOLD = 200_000
#: Rows added to the index per step (bounds the memory of a build).
BUILD_CHUNK_ROWS = 65_536
#: Candidates asked of an index per result wanted, by dtype, before exact re-scoring: quantised scores
#: misorder near ties, the exact scores put them right.
OVERSAMPLE = {"i8": 2}


class AnnEngine(Protocol):
    """What :func:`build_ann` and searches need of an ANN engine; ``index`` is the engine's own object."""

    name: str
    file: str  # its file in the store folder
    dtypes: tuple[str, ...]
    build_keys: tuple[str, ...]  # settings an index keeps from its build: rows are added only to one built alike
    search_key: str  # the setting of queries, changed without a rebuild
    keys: tuple[str, ...]  # its fields in the meta-file entry

    def version(self) -> str: ...

    def new(self, dim: int, n: int, settings: AnnSettings, vectors: np.ndarray) -> tuple[Any, dict[str, Any]]: ...

    def restore(self, path: Path) -> Any | None: ...

    def prepare(self, index: Any, settings: AnnSettings) -> None: ...

    def add(self, index: Any, lo: int, vectors: np.ndarray, threads: int) -> None: ...

    def save(self, index: Any, path: Path) -> None: ...

    def open(self, path: Path) -> Any: ...

    def shape(self, index: Any) -> tuple[int, int, str, dict[str, Any]]: ...

    def search(self, index: Any, queries: np.ndarray, k: int, entry: dict[str, Any]) -> np.ndarray: ...


#: The engines by name; an entry without an engine is usearch's (indexes of older birdbridge versions).
ENGINES: dict[str, AnnEngine] = {e.name: e for e in (UsearchEngine(), FaissIvfEngine())}
OLD_ENGINE = "usearch"


def default_engine() -> str:
    """``faiss-ivf`` where FAISS is installed (it builds large indexes several times faster), else ``usearch``."""
    return "faiss-ivf" if faiss_available() else "usearch"


def require_engine(name: str) -> AnnEngine:
    """The engine called ``name``, once its library is found importable (else an error saying how to install it)."""
    engine = _engine(name)
    engine.version()
    return engine


def engine_of(entry: Mapping[str, Any] | None) -> str:
    return str((entry or {}).get("engine", OLD_ENGINE))


def _engine(name: str) -> AnnEngine:
    try:
        return ENGINES[name]
    except KeyError:
        raise BirdbridgeError(f"unknown ANN engine {name!r}; choose {' or '.join(ENGINES)}") from None


@dataclass(frozen=True)
class AnnSettings:
    """How to build and search an ANN index. ``engine``: see :data:`ENGINES` (default :func:`default_engine`);
    ``dtype``: how the index stores vectors. usearch: ``connectivity`` (M), ``expansion_add`` (efConstruction),
    ``expansion_search`` (ef). faiss-ivf: ``nlist`` (0: chosen from the rows, :func:`~birdbridge.store.ann_ivf.
    auto_nlist`, whenever centroids are trained), ``nprobe`` (lists scanned a query). ``expansion_search`` and
    ``nprobe`` change without a rebuild. The defaults: ``benchmarks/bench_ann.py`` and the README."""

    engine: str = field(default_factory=default_engine)
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128  # recall@10 0.995 at 1M × 768 clustered vectors, p50 3 ms (bench_archive.py)
    nlist: int = 0
    nprobe: int = 32
    dtype: str = "f16"

    def __post_init__(self) -> None:
        engine = _engine(self.engine)
        for name, value in asdict(self).items():
            if name not in ("engine", "dtype", "nlist") and int(value) < 1:
                raise BirdbridgeError(f"ANN {name} must be at least 1, got {value}")
        if int(self.nlist) < 0:
            raise BirdbridgeError(f"ANN nlist must be at least 1 (or 0: chosen from the rows), got {self.nlist}")
        if int(self.nprobe) > NPROBE_MAX:
            raise BirdbridgeError(f"ANN nprobe must be at most {NPROBE_MAX}, got {self.nprobe}")
        if self.dtype not in engine.dtypes:
            raise BirdbridgeError(f"ANN dtype must be one of {', '.join(engine.dtypes)}, got {self.dtype!r}")

    @property
    def search_depth(self) -> int:
        """The engine's search setting (``expansion_search`` or ``nprobe``)."""
        return int(getattr(self, _engine(self.engine).search_key))

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any] | None, **given: int | str | None) -> AnnSettings:
        """The settings given (not None); the others those of the index ``entry`` describes (if it is of the engine
        given, or none is given and this birdbridge knows its engine), else the defaults. Without an engine given or
        recorded, settings of one engine (``connectivity``: usearch, ``nprobe``: faiss-ivf) choose it; a setting of
        another engine than the chosen one is an error."""
        owners = {key: e.name for e in ENGINES.values() for key in e.keys if key in cls.__dataclass_fields__}
        named = {owners[key] for key, value in given.items() if value is not None and key in owners}
        known = bool(entry) and engine_of(entry) in ENGINES
        engine = given.get("engine") or (engine_of(entry) if known else next(iter(named)) if len(named) == 1
                                         else default_engine())
        foreign = [key for key, value in given.items() if value is not None and owners.get(key, engine) != engine]
        if foreign:
            raise BirdbridgeError(f"{', '.join(foreign)}: settings of the {owners[foreign[0]]} ANN engine, not of "
                                  f"{engine}; choose the engine too (--engine {owners[foreign[0]]})")
        if entry and engine_of(entry) != engine:
            entry = None
        kinds = {f.name: str if f.name in ("dtype", "engine") else int for f in fields(cls)}
        # an index's nlist is what "chosen from the rows" gave then: not lent, so that centroids trained afresh fit
        current = {name: kinds[name](entry[name]) for name in kinds
                   if entry and name in entry and name not in ("engine", "nlist")}
        return cls(**{**current, **{name: kinds[name](v) for name, v in given.items() if v is not None},
                      "engine": engine})

    def builds_like(self, entry: Mapping[str, Any] | None, n: int | None = None) -> bool:
        """Whether the index ``entry`` describes was built as these settings would build it, so that rows may be
        added to it (for faiss-ivf also: its centroids were trained on at least 1 / REGROW_FACTOR of ``n`` rows)."""
        return not _why_afresh(entry, self, n)


def _why_afresh(entry: Mapping[str, Any] | None, settings: AnnSettings, n: int | None) -> str:
    """Why the index ``entry`` describes is not one to add rows to (empty: it is)."""
    if not entry:
        return "no index"
    engine = _engine(settings.engine)
    old = (engine_of(entry), entry.get("dtype", "f16"))
    if old != (settings.engine, settings.dtype):
        return f"{old[0]} {old[1]} -> {settings.engine} {settings.dtype}"
    for key in engine.build_keys:
        wanted = getattr(settings, key)
        if (wanted or key != "nlist") and int(entry.get(key, -1)) != wanted:
            return f"{key} {entry.get(key)} -> {wanted}"
    trained = entry.get("trained_rows")
    if trained is not None and n is not None and n > REGROW_FACTOR * int(trained):
        return f"{n:,} rows, more than {REGROW_FACTOR} times the {int(trained):,} its centroids were trained on"
    return ""


class AnnTarget(Protocol):
    """What building an ANN index needs of a store."""

    folder: Path
    kind: StoreKind

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    @property
    def vectors(self) -> np.ndarray: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    def write_lock(self) -> contextlib.AbstractContextManager[None]: ...

    def set_ann(self, entry: Mapping[str, Any] | None) -> None: ...


def build_ann(
    store: AnnTarget,
    *,
    rebuild: bool = False,
    settings: AnnSettings | None = None,
    engine: str | None = None,
    threads: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build (or bring up to date) the store's ANN index; returns its meta-file entry.

    ``settings`` default to those of the current index, or of ``engine`` if given (:meth:`AnnSettings.from_entry`;
    a new index: :func:`default_engine`). An existing
    index built alike (:meth:`AnnSettings.builds_like`) gets only the rows it lacks (unless ``rebuild``); other
    settings build it from scratch. ``threads=0`` uses every core. The file is written atomically, then
    recorded in the meta file; a kill in between leaves a file that covers more rows than its entry says, which
    is not searched, and the next build adds only the rows it lacks. The entry's ``added_rows`` says how many
    rows this build added.
    """
    from birdbridge.utils.progress import progress_bar

    n = len(store)
    if n == 0:
        raise BirdbridgeError(f"{store.kind.noun} {store.folder} has no {store.kind.item}s to index")
    current = store.meta.get("ann") or None
    if settings is None:
        settings = AnnSettings.from_entry(current, engine=engine)
    engine = require_engine(settings.engine)
    path = store.folder / engine.file
    index, start, built = None, 0, {}
    why = _why_afresh(current, settings, n) if current and not rebuild else ""
    if current and not rebuild and not why and path.is_file():
        done = int(current["count"])
        if done == n:  # up to date: at most the search depth changes, unless the file is damaged
            try:
                load_ann(path, current, store.kind.meta_file)
            except BirdbridgeError as exc:
                why = f"the index file cannot be searched: {exc}"
            else:
                if int(current.get(engine.search_key, -1)) != settings.search_depth:
                    return set_search_depth(store, settings.search_depth)
                return dict(current)
        index = None if why else _resumable(engine, path, done, n, store.dim, settings.dtype, current)
        if index is not None:
            start = engine.shape(index)[0]
            built = {key: current[key] for key in engine.keys
                     if key in current and (key in engine.build_keys or not hasattr(settings, key))}
        elif not why:
            why = "the index file does not match its entry"
    vectors = store.vectors
    began = time.perf_counter()
    if index is None:
        if current and not rebuild:
            log.info("%s: building the ANN index afresh (%s)", store.folder, why or "no index file")
        index, built = engine.new(store.dim, n, settings, vectors)
    engine.prepare(index, settings)
    with progress_bar("Building ANN index", n, progress, completed=start) as bar:
        for lo in range(start, n, BUILD_CHUNK_ROWS):
            hi = min(lo + BUILD_CHUNK_ROWS, n)
            engine.add(index, lo, vectors[lo:hi], threads)
            bar.advance(hi - lo)
    entry = {
        "engine": engine.name,
        "file": engine.file,
        "count": n,
        "metric": "ip",
        "dtype": settings.dtype,
        **{key: getattr(settings, key) for key in engine.keys if hasattr(settings, key)},
        **built,
        "built": now_iso(),
        "build_seconds": round(time.perf_counter() - began, 2),
        "added_rows": n - start,
        "library": engine.version(),
    }
    with store.write_lock():  # the file and its entry change together for other writers
        with atomic_path(path) as tmp:
            engine.save(index, tmp)
            fsync_path(tmp)
        store.set_ann(entry)
    for other in ANN_FILES:  # an index of another engine is no longer recorded
        if other != engine.file:
            (store.folder / other).unlink(missing_ok=True)
    return entry


def _resumable(engine: AnnEngine, path: Path, done: int, n: int, dim: int, dtype: str,
               entry: Mapping[str, Any]) -> Any | None:
    """The index in ``path`` to add rows to, if it holds rows ``0 .. m-1`` for ``done <= m <= n`` (``m > done``: a
    build killed after saving its file, before recording it), ``dim`` wide, of ``dtype``, built as ``entry``
    says; else None."""
    index = engine.restore(path)
    if index is None:
        return None
    m, width, stored, kept = engine.shape(index)
    if width != dim or stored != dtype or not done <= m <= n:
        return None
    return index if all(int(entry.get(key, -1)) == value for key, value in kept.items()) else None


def set_search_depth(store: AnnTarget, depth: int) -> dict[str, Any]:
    """Change the search depth (``expansion_search`` or ``nprobe``) recorded for the store's ANN index (no rebuild)."""
    current = store.meta.get("ann")
    if not current:
        raise BirdbridgeError(f"{store.kind.noun} {store.folder} has no ANN index; build one with "
                              f"`{store.kind.ann_command}`")
    key = _engine(engine_of(current)).search_key
    AnnSettings(engine=engine_of(current), **{key: depth})
    entry = {**current, key: int(depth), "added_rows": 0}
    store.set_ann(entry)
    return entry


set_expansion_search = set_search_depth  # its former name


def ann_status(folder: Path, entry: Mapping[str, Any] | None, count: int) -> dict[str, Any]:
    """The ANN index of a store of ``count`` rows: ``exists``, ``up_to_date``, ``rows`` (indexed), ``count``,
    ``settings``, ``built``, ``size_bytes``."""
    path = folder / (entry["file"] if entry else ENGINES[OLD_ENGINE].file)
    exists = bool(entry) and path.is_file()
    rows = int(entry["count"]) if exists else 0
    names = (*(ENGINES[engine_of(entry)].keys if engine_of(entry) in ENGINES else ()), "dtype", "engine")
    return {
        "exists": exists,
        "up_to_date": exists and rows == count,
        "rows": rows,
        "count": count,
        "settings": {k: entry[k] for k in names if k in entry} if exists else {},
        "built": entry.get("built") if exists else None,
        "size_bytes": path.stat().st_size if exists else 0,
    }


def load_ann(path: str | Path, entry: Mapping[str, Any], meta_file: str = "the meta file") -> Any:
    """The index in ``path`` opened for searching (usearch: memory-mapped), checked against its ``meta_file``
    entry (engine, rows, dimension, dtype, build settings): a mismatch is an error, never a search of the wrong
    index."""
    name = engine_of(entry)
    if name not in ENGINES:
        raise BirdbridgeError(f"{path}: an ANN index of {name}, which this birdbridge does not read; build it "
                              "again with --rebuild")
    engine = ENGINES[name]
    try:
        index = engine.open(Path(path))
    except BirdbridgeError as exc:
        raise BirdbridgeError(f"{path}: {exc}") from None
    except Exception as exc:
        raise BirdbridgeError(f"{path}: unreadable ANN index ({exc})") from None
    rows, _dim, dtype, kept = engine.shape(index)
    if rows != int(entry["count"]):
        raise BirdbridgeError(f"{path}: ANN index does not match {meta_file} (an interrupted build?)")
    if dtype != entry.get("dtype", "f16"):
        raise BirdbridgeError(f"{path}: ANN index stores {dtype}, but {meta_file} says "
                              f"{entry.get('dtype', 'f16')}; build it again with --rebuild")
    for key, value in kept.items():
        if int(entry.get(key, -1)) != value:
            raise BirdbridgeError(f"{path}: ANN index has {key} {value}, but {meta_file} says {entry.get(key)}; "
                                  "build it again with --rebuild")
    return index


def ann_candidates(index: Any, entry: Mapping[str, Any], queries: np.ndarray, k: int) -> np.ndarray:
    """``[Q, k × oversampling]`` int64 candidate rows from the ANN index ``entry`` describes (``-1`` where it found
    fewer), for :func:`birdbridge.store.search.rescore` (see :data:`OVERSAMPLE`)."""
    k = k * OVERSAMPLE.get(str(entry.get("dtype", "f16")), 1)
    return ENGINES[engine_of(entry)].search(index, queries, k, dict(entry))


class AnnSlot:
    """The loaded ANN index of one store folder: used only while it covers every row, reloaded when its entry
    changes, searched by one thread at a time (usearch's thread contexts are not re-entrant)."""

    def __init__(self, folder: Path, meta_file: str) -> None:
        self.folder = folder
        self.meta_file = meta_file
        self._cached: tuple[dict[str, Any], Any] | None = None
        self._lock = threading.Lock()

    def index(self, entry: Mapping[str, Any] | None, count: int) -> Any | None:
        """The index ``entry`` describes if it is up to date with ``count`` rows, else None (a broken file is
        logged and searched around)."""
        status = ann_status(self.folder, entry, count)
        if not status["up_to_date"] or status["rows"] == 0:
            return None
        cached = self._cached
        if cached is not None and cached[0] == entry:
            return cached[1]
        try:
            index = load_ann(self.folder / entry["file"], entry, self.meta_file)
        except BirdbridgeError as exc:
            log.warning("%s; searching exactly", exc)
            return None
        self._cached = (dict(entry), index)
        return index

    def candidates(self, entry: Mapping[str, Any] | None, count: int, queries: np.ndarray, k: int) -> np.ndarray | None:
        """:func:`ann_candidates` of the up-to-date index, or None when there is none."""
        index = self.index(entry, count)
        if index is None:
            return None
        with self._lock:
            return ann_candidates(index, entry, queries, k)

    def forget(self) -> None:
        self._cached = None


__all__ = [
    "ANN_FILES", "ANN_THRESHOLD", "ENGINES", "AnnEngine", "AnnSettings", "AnnSlot", "AnnTarget", "ann_candidates",
    "ann_status", "build_ann", "default_engine", "load_ann", "require_engine", "set_expansion_search",
    "set_search_depth",
]
