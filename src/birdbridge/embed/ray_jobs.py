"""Bulk embedding on Ray (``--ray [ADDRESS]``, optional extra ``birdbridge[ray]``): one Ray Data pipeline for every
bulk job (``embed audio|image``, folder searches, ``archive build``, ``index``).

The pipeline: the input files are listed; CPU tasks read, decode and window each file with the local path's own
functions (:func:`~birdbridge.embed.audio.file_windows`, the teacher's image preprocessing); an actor pool (one model
per actor, one GPU each where the cluster has GPUs) embeds the windows in batches and writes one shard per file
(``.npz``: vectors, window start and end times), atomically. Each job then merges the shards into the outputs and
stores the local path writes (:meth:`Shards.table` gives the :class:`~birdbridge.embed.table.EmbeddingTable` the
local path would have embedded).

**Resume** is per file: a shard's name is a digest of its file (path, size, modification time) and of what embeds
it (model fingerprint, windows), so a rerun after a killed job embeds only the files without a shard. A file that
cannot be read is a :class:`~birdbridge.errors.Failure`, as in the local path. Ray restarts an actor that dies and
retries its batch (twice), and a read whose worker died is retried once (Ray Data's default would retry it
forever); files still without a shard when the job ends are listed as failures, and a rerun retries them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError, Failure

INSTALL_HINT = "pip install 'birdbridge[ray]'"
RETRIES = 2  # restarts of a dead actor, and retries of its batch
READ_RETRIES = 1  # retries of a read whose worker died (a decoder that crashes on a file crashes again)
FILES_PER_BATCH = 4  # files per batch of an inference actor
LOCAL = "local"
SHARDS_IN_STORE = "ray-shards.tmp"  # a store's Ray build keeps its shards in the store's folder until committed


def require_ray() -> Any:
    """The ``ray`` module, or an error saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise BirdbridgeError(f"--ray needs Ray, which is not installed ({exc}): {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """Ray, joined at ``address`` (``local``: a new local instance; ``auto``: the cluster this machine belongs to;
    ``ray://host:10001``), unless this process has joined one already; a Ray it started is shut down after."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=None if address in ("", LOCAL) else address, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, or a bare Exception on a timeout
        raise BirdbridgeError(
            f"--ray {address}: cannot start or join Ray ({str(exc).strip().splitlines()[0]}); give `--ray` alone for a "
            "local instance, `--ray auto` on a node of a running cluster (`ray start --head`), or the address of one"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class BulkSpec:
    """What a bulk job runs: ``read`` (on CPU workers) turns a file into the model's inputs [n, ...] and the windows'
    start and end times (None for pictures), raising :class:`~birdbridge.errors.BirdbridgeError` for a bad file;
    ``load`` (once per actor) gives the model on a device; ``infer`` embeds a batch of inputs. ``identity`` (model
    fingerprint, windows) is part of every shard's name."""

    kind: str
    read: Callable[[str], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]
    load: Callable[[str | None], Any]
    infer: Callable[[Any, np.ndarray], np.ndarray]
    identity: dict[str, Any]
    device: str | None = None


@dataclass
class Shards:
    """The shard folder of a job: one ``.npz`` per embedded file."""

    folder: Path
    identity: dict[str, Any]

    def path(self, file: str | os.PathLike[str]) -> Path:
        path = Path(file)
        try:
            st = path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None
        key = json.dumps([str(path), stamp, self.identity], sort_keys=True, default=str)
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"

    def done(self, file: str | os.PathLike[str]) -> bool:
        return self.path(file).exists()

    def write(self, file: str, vectors: np.ndarray, start_s: np.ndarray | None, end_s: np.ndarray | None) -> None:
        from birdbridge.utils.atomic import atomic_path

        arrays = {"vectors": np.asarray(vectors, np.float32)}
        if start_s is not None and end_s is not None:
            arrays.update(start_s=np.asarray(start_s, np.float64), end_s=np.asarray(end_s, np.float64))
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(file)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    def table(self, files: Sequence[str | os.PathLike[str]], failures: Sequence[Failure] = (), dim: int = 0,
              meta: dict | None = None, timed: bool = True):
        """The :class:`~birdbridge.embed.table.EmbeddingTable` of ``files`` in order (rows named ``str(file)``), as
        the local path embeds them; files without a shard have no rows. ``failures``: those of ``files`` are kept.
        ``timed``: the rows have window times (audio)."""
        from birdbridge.embed.table import EmbeddingTable

        names: list[str] = []
        vectors, starts, ends = [np.zeros((0, dim), np.float32)], [np.zeros(0)], [np.zeros(0)]
        for file in files:
            if self.done(file):
                with np.load(self.path(file)) as shard:
                    vectors.append(shard["vectors"].reshape(-1, dim))
                    if timed:
                        starts.append(shard["start_s"])
                        ends.append(shard["end_s"])
                names += [str(file)] * len(vectors[-1])
        mine = {str(f) for f in files}
        return EmbeddingTable(vectors=np.concatenate(vectors), names=names,
                              start_s=np.concatenate(starts) if timed else None,
                              end_s=np.concatenate(ends) if timed else None,
                              failures=[f for f in failures if f.source in mine], meta=dict(meta or {}))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class BulkReport:
    """A Ray job: the files it embedded, those it found embedded already (their shards), and those it skipped."""

    shards: Shards
    embedded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def run_bulk(files: Sequence[str | os.PathLike[str]], spec: BulkSpec, shard_folder: str | os.PathLike[str], *,
             address: str = LOCAL, actors: int | None = None, batch_size: int = 16,
             progress: bool | None = None) -> BulkReport:
    """Embed ``files`` into one shard each under ``shard_folder`` on Ray (see the module docs); files with a shard
    already are not embedded again. ``actors``: inference actors (default: one per GPU, else half the CPUs)."""
    shards = Shards(Path(shard_folder), spec.identity)
    names = list(dict.fromkeys(str(f) for f in files))
    report = BulkReport(shards)
    todo = []
    for name in names:
        (report.resumed if shards.done(name) else todo).append(name)
    if not todo:
        return report
    with connected(address) as ray:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress is not False
        context.max_errored_blocks = -1  # a block that failed for good is a failure listed below, not the job's end
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pool = actors or (gpus or max(1, cpus // 2))
        dataset = ray.data.from_items([{"file": name} for name in todo], override_num_blocks=min(len(todo), 200))
        # Ray Data retries a task whose worker died without end: a file that crashes its decoder would hang the job
        dataset = dataset.map(partial(_read_row, spec.read), max_retries=READ_RETRIES)
        with warnings.catch_warnings():  # max_restarts and max_task_retries have no named parameter yet
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = dataset.map_batches(
                _Embedder, fn_constructor_args=(spec, shards, batch_size, "cuda" if gpus else spec.device),
                batch_size=FILES_PER_BATCH, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(pool, len(todo))),
                num_gpus=1 if gpus else 0, max_restarts=RETRIES, max_task_retries=RETRIES)
        errors: dict[str, str] = {}  # files that could not be read
        lost = "its Ray worker died before writing it"
        try:
            for row in dataset.iter_rows():
                if row["error"]:
                    errors[str(row["file"])] = str(row["error"])
        except Exception as exc:
            cause = _user_error(exc)
            if cause is not None:
                raise cause from None
            lost = f"the Ray job stopped ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''})"
    for name in todo:
        if shards.done(name):
            report.embedded.append(name)
        elif name in errors:
            report.failures.append(Failure(name, errors[name]))
        else:
            report.failures.append(Failure(name, f"{name}: {lost}; run the command again to retry it"))
    return report


def _user_error(exc: BaseException) -> BirdbridgeError | None:
    """A BirdbridgeError raised in a worker (a model that cannot be loaded), however Ray wrapped it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BirdbridgeError):
            return BirdbridgeError(str(exc).splitlines()[-1] if "\n" in str(exc) else str(exc))
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None


def _read_row(read: Callable, row: dict[str, Any]) -> dict[str, Any]:
    """One file's model inputs (as bytes, with their shape and times), or the error that reading it raised."""
    file = str(row["file"])
    try:
        inputs, start_s, end_s = read(file)
    except BirdbridgeError as exc:
        return {"file": file, "data": b"", "meta": json.dumps({"error": str(exc)})}
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    meta = {"shape": list(inputs.shape), "error": None,
            "start_s": None if start_s is None else [float(t) for t in start_s],
            "end_s": None if end_s is None else [float(t) for t in end_s]}
    return {"file": file, "data": inputs.tobytes(), "meta": json.dumps(meta)}


class _Embedder:
    """An inference actor: loads the model once, embeds each batch of files and writes their shards."""

    def __init__(self, spec: BulkSpec, shards: Shards, batch_size: int, device: str | None) -> None:
        self.spec, self.shards, self.batch_size = spec, shards, batch_size
        self.model = spec.load(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files, errors, parts = [], [], []
        for file, data, meta_text in zip(batch["file"], batch["data"], batch["meta"], strict=True):
            meta = json.loads(str(meta_text))
            files.append(str(file))
            errors.append(meta["error"] or "")
            if not meta["error"]:
                parts.append((str(file), np.frombuffer(bytes(data), np.float32).reshape(meta["shape"]), meta))
        inputs = [p[1] for p in parts if len(p[1])]
        if inputs:
            stacked = np.concatenate(inputs)
            vectors = np.concatenate([
                np.asarray(self.spec.infer(self.model, stacked[i : i + self.batch_size]), np.float32)
                for i in range(0, len(stacked), self.batch_size)])
        at = 0
        for file, x, meta in parts:
            mine = vectors[at : at + len(x)] if len(x) else np.zeros((0, 0), np.float32)
            at += len(x)
            self.shards.write(file, mine, meta["start_s"], meta["end_s"])
        return {"file": np.array(files, dtype=object), "error": np.array(errors, dtype=object)}


# ------------------------------------------------------------------------------------------ audio and pictures


def audio_spec(model: Any, student: Any, spec: Any, channel: int | None = None, device: str | None = None) -> BulkSpec:
    """Windows of recordings through a student (``model``: its ref, or the loaded ``student`` itself)."""
    from birdbridge.embed.audio import file_windows

    identity = {"kind": "audio", "fingerprint": student.fingerprint, "window_s": spec.window_s, "hop_s": spec.step_s,
                "min_tail_s": spec.min_tail_s, "channel": channel}
    read = partial(file_windows, sample_rate=student.sample_rate, window_samples=student.window_samples, spec=spec,
                   channel=channel)
    runs = student.backend  # the actors run the tower as the caller's student does
    load = (partial(_loaded, student) if not isinstance(model, (str, os.PathLike))
            else partial(_student, str(model), backend=runs["backend"], precision=runs["precision"]))
    return BulkSpec("audio", read, load, _embed_waves, identity, device)


def image_spec(model: Any, teacher: Any, device: str | None = None) -> BulkSpec:
    """Pictures through a teacher's image tower (``model``: its ref, or the loaded ``teacher`` itself)."""
    identity = {"kind": "images", "fingerprint": teacher.fingerprint}
    load = partial(_loaded, teacher) if not isinstance(model, (str, os.PathLike)) else partial(_teacher, str(model))
    return BulkSpec("images", partial(_read_image, teacher.preprocessor), load, _embed_pixels, identity, device)


def _loaded(model: Any, device: str | None) -> Any:
    """A model shipped to the actor as it is (a Python caller's loaded object); a student moves to ``device``."""
    import torch

    return model.to(device) if device and isinstance(model, torch.nn.Module) else model


def _student(ref: str, device: str | None, backend: str = "torch", precision: str = "fp32") -> Any:
    from birdbridge.models.loader import load_student

    return load_student(ref, device, backend=backend, precision=precision)


def _teacher(ref: str, device: str | None) -> Any:
    from birdbridge.models.loader import load_teacher

    return load_teacher(ref, device)


def _embed_waves(student: Any, waves: np.ndarray) -> np.ndarray:
    return student.embed(waves, batch_size=len(waves))


def _read_image(preprocessor: Any, file: str) -> tuple[np.ndarray, None, None]:
    from birdbridge.models.image_preprocess import open_image

    return preprocessor(open_image(file)).numpy()[None], None, None


def _embed_pixels(teacher: Any, pixels: np.ndarray) -> np.ndarray:
    import torch

    return teacher.encode_images(torch.from_numpy(np.ascontiguousarray(pixels)), batch_size=len(pixels)).numpy()


__all__ = ["INSTALL_HINT", "SHARDS_IN_STORE", "BulkReport", "BulkSpec", "Shards", "audio_spec", "connected",
           "embed_audio_on_ray", "embed_images_on_ray", "image_spec", "require_ray", "run_bulk"]


def embed_audio_on_ray(inputs: Sequence[str | os.PathLike[str]], model: Any, shard_folder: str | os.PathLike[str], *,
                       window_s: float | None = None, hop_s: float | None = None, batch_size: int = 16,
                       device: str | None = None, address: str = LOCAL, progress: bool | None = None,
                       keep_shards: bool = False) -> Any:
    """:func:`~birdbridge.embed.audio.embed_audio_windows` on Ray: the same table (rows, failures, meta); shards under
    ``shard_folder`` (removed at the end unless ``keep_shards``) make a rerun of a killed job resume."""
    from birdbridge.embed.audio import embed_meta, expand_inputs, load_audio_student, window_spec_for

    require_ray()
    student = load_audio_student(model, device)
    spec = window_spec_for(student, window_s, hop_s)
    sources, unreadable = expand_inputs(inputs, None)
    job = run_bulk(sources, audio_spec(model, student, spec, device=device), shard_folder, address=address,
                   batch_size=batch_size, progress=progress)
    table = job.shards.table(sources, job.failures, student.embed_dim, embed_meta(student, spec))
    table.failures = [*unreadable, *table.failures]
    if not keep_shards:
        job.shards.remove()
    return table


def embed_images_on_ray(inputs: Sequence[str | os.PathLike[str]], model: Any, shard_folder: str | os.PathLike[str], *,
                        batch_size: int = 32, device: str | None = None, address: str = LOCAL,
                        progress: bool | None = None, keep_shards: bool = False) -> Any:
    """:func:`~birdbridge.embed.images.embed_image_files` on Ray (see :func:`embed_audio_on_ray`)."""
    from birdbridge.embed.images import expand_images
    from birdbridge.models.loader import load_teacher

    require_ray()
    teacher = load_teacher(model, device) if isinstance(model, (str, os.PathLike)) else model
    items, unreadable = expand_images(inputs)
    job = run_bulk(items, image_spec(model, teacher, device), shard_folder, address=address, batch_size=batch_size,
                   progress=progress)
    table = job.shards.table(items, job.failures, teacher.embed_dim, timed=False)
    table.failures = [*unreadable, *table.failures]
    if not keep_shards:
        job.shards.remove()
    return table
