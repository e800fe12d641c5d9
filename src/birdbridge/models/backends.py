"""Inference backends for the student's audio tower (log-mel features -> unnormalised embedding).

``torch`` runs the module itself; ``onnx`` runs the tower exported to ONNX in ONNX Runtime (the optional extra
``birdbridge[onnx]``). Precision ``fp32`` keeps the weights; ``int8`` quantises the Linear layers' weights
dynamically (torch's ``quantize_dynamic``, or ONNX Runtime's: :data:`INT8_RECIPE`). The log-mel front end stays in
torch either way.

ONNX Runtime runs one window per call on single-threaded sessions, as many windows at a time as torch has threads:
windows in parallel rather than each operator split over threads (no waits at each operator's end, fewer cycles a
window; ``benchmarks/bench_backends.py``), and a window's int8 embedding does not depend on the batch it came in
(dynamic quantisation scales each call's activations by their own range).

The ONNX file is exported once and cached in ``$BIRDBRIDGE_CACHE/onnx`` under a key of the model's fingerprint, a
digest of its weights as loaded, the precision, the int8 recipe and the versions of the exporter and runtime: changed
weights, another recipe or a new version get a new file, never an old one. A cached file whose checksum does not match
its record is rebuilt (with a message). An export that fails falls back to torch with one :class:`BackendWarning`
naming the model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.utils.array_cache import cache_root, identity_key
from birdbridge.utils.atomic import atomic_path, write_json

if TYPE_CHECKING:
    from birdbridge.models.student import AudioStudent

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("fp32", "int8")
ONNX_INSTALL = "pip install 'birdbridge[onnx]'"
EXPORT_VERSION = 1  # bump when the exported graph changes (inputs, outputs, options)
OPSET = 17
# ONNX Runtime's dynamic int8 quantisation, as passed to quantize_dynamic and recorded in the cache key (so another
# recipe never reuses a file). Measured on a 2-core AVX2 EPYC without VNNI: per-channel weights, reduce_range, uint8
# weights, quantising the attention's activation products too (MatMulConstBOnly false) and the transformers
# optimizer's Swin fusions were each as fast or slower a window, in CPU time (README, "Backends").
INT8_RECIPE: dict[str, Any] = {"method": "dynamic", "weight_type": "QInt8", "per_channel": False,
                               "reduce_range": False, "op_types": None, "extra_options": {}}
log = logging.getLogger(__name__)


class BackendWarning(UserWarning):
    """The backend asked for could not run this model; another one does."""


@dataclass
class TowerRunner:
    """Runs the audio tower: features [B, 1, T, F] -> unnormalised embeddings [B, D] (float32, on the CPU for onnx)."""

    backend: str
    precision: str
    runtime: str

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed_waves(self, frontend: nn.Module, waves: torch.Tensor) -> torch.Tensor:
        """Windows [B, N] -> unnormalised embeddings [B, D] through ``frontend`` (waves -> features) and the tower."""
        return self(frontend(waves))

    def describe(self) -> dict[str, str]:
        """What ran: ``{"backend", "precision", "runtime"}`` (result files record it)."""
        return {"backend": self.backend, "precision": self.precision, "runtime": self.runtime}


@dataclass
class TorchTower(TowerRunner):
    module: nn.Module = None  # type: ignore[assignment]

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.module(features)


@dataclass
class OnnxTower(TowerRunner):
    """A single-threaded ONNX Runtime session run on ``workers`` windows at a time (``session.run`` releases the
    GIL), one window per call; :meth:`embed_waves` runs each window's front end in its worker too, on one torch
    thread (torch's threads on a batch spend 2–4× the CPU time on it here)."""

    session: Any = None
    path: Path | None = None
    workers: int = 1
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # callers' threads (serve) share it

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        array = features.detach().to("cpu", torch.float32).contiguous().numpy()
        return self._each([array[i : i + 1] for i in range(array.shape[0])], self._run)

    def embed_waves(self, frontend: nn.Module, waves: torch.Tensor) -> torch.Tensor:
        def run(window: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return self._run(frontend(window).to(torch.float32).contiguous().numpy())

        return self._each([waves[i : i + 1] for i in range(waves.shape[0])], run)

    def _each(self, windows: list, run: Callable[[Any], np.ndarray]) -> torch.Tensor:
        if self.workers > 1 and len(windows) > 1:
            with self._lock:
                if self._pool is None:  # torch.set_num_threads holds for the thread that calls it
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="birdbridge-onnx",
                                                    initializer=torch.set_num_threads, initargs=(1,))
            outs = list(self._pool.map(run, windows))
        else:
            outs = [run(window) for window in windows]
        return torch.from_numpy(np.concatenate(outs))

    def _run(self, window: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"features": window})[0]


class FeaturesTower(nn.Module):
    """The student's tower as a module of its own (features -> embedding), for export and quantisation."""

    def __init__(self, student: AudioStudent) -> None:
        super().__init__()
        self.student = student

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.student.embed_features(features)


def check_backend(backend: str, precision: str) -> tuple[str, str]:
    """``(backend, precision)`` lower-cased, or an InputError naming the option and its choices."""
    backend, precision = str(backend).strip().lower(), str(precision).strip().lower()
    if backend not in BACKENDS:
        raise InputError("--backend", f"unknown backend {backend!r}", f"choose from {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InputError("--precision", f"unknown precision {precision!r}", f"choose from {', '.join(PRECISIONS)}")
    return backend, precision


def onnx_available() -> bool:
    """Whether ONNX Runtime and onnx are installed (``birdbridge[onnx]``)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: str | torch.device) -> str:
    """``torch`` or ``onnx``: ``auto`` is onnx on the CPU when ONNX Runtime is installed (the faster one here:
    ``benchmarks/bench_backends.py``), else torch."""
    on_cpu = torch.device(device).type == "cpu"
    if backend == "auto":
        return "onnx" if on_cpu and onnx_available() else "torch"
    if backend == "onnx":
        if not on_cpu:
            raise InputError("--backend", f"onnx runs on the CPU, not on {device}",
                             "drop --device, or use --backend torch")
        if not onnx_available():
            raise BirdbridgeError(f"--backend onnx needs ONNX Runtime, which is not installed: {ONNX_INSTALL}")
    return backend


def tower_runner(student: AudioStudent, backend: str = "auto", precision: str = "fp32", *,
                 cache: str | Path | None = None) -> TowerRunner:
    """The runner of ``student``'s tower on ``backend`` at ``precision``; ``cache``: the folder of ONNX files
    (default :func:`onnx_cache_dir`)."""
    backend, precision = check_backend(backend, precision)
    backend = resolve_backend(backend, student.device)
    if backend == "onnx":
        try:
            return _onnx_runner(student, precision, Path(cache) if cache is not None else onnx_cache_dir())
        except ExportFailed as exc:
            warnings.warn(BackendWarning(
                f"model {student.name}: the ONNX export failed ({exc}); its audio tower runs on torch "
                f"({precision}) instead"), stacklevel=2)
    return _torch_runner(student, precision)


def with_backend(student: AudioStudent, backend: str = "auto", precision: str = "fp32", *,
                 cache: str | Path | None = None) -> AudioStudent:
    """A view of ``student`` (same weights, a copy of the object) whose :meth:`~AudioStudent.embed` runs on
    ``backend`` at ``precision``; torch fp32 gives ``student`` itself."""
    runner = tower_runner(student, backend, precision, cache=cache)
    if runner.backend == "torch" and runner.precision == "fp32":
        return student
    view = copy.copy(student)
    view.runner = runner
    return view


def onnx_cache_dir() -> Path:
    """``$BIRDBRIDGE_CACHE/onnx``, default ``~/.cache/birdbridge/onnx``."""
    return cache_root() / "onnx"


class ExportFailed(BirdbridgeError):
    """The tower could not be exported to ONNX (or quantised there)."""


def _torch_runner(student: AudioStudent, precision: str) -> TorchTower:
    tower: nn.Module = FeaturesTower(student)
    if precision == "int8":  # a quantised copy: the student itself is left as it is
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
            warnings.simplefilter("ignore")
            tower = torch.ao.quantization.quantize_dynamic(tower, {nn.Linear}, dtype=torch.qint8).eval()
    return TorchTower("torch", precision, f"torch {torch.__version__}", module=tower)


def _onnx_runner(student: AudioStudent, precision: str, folder: Path) -> OnnxTower:
    import onnxruntime as ort

    path = cached_onnx(student, precision, folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # parallel over windows instead (OnnxTower): 1.15–1.3× the windows a second
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Threads that spin while waiting take cores from the other threads on a busy machine: 1.3× slower here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # an operator this runtime lacks, say: as good as a failed export
        raise ExportFailed(f"ONNX Runtime cannot run the exported graph ({type(exc).__name__}: {exc})") from exc
    return OnnxTower("onnx", precision, f"onnxruntime {ort.__version__}", session=session, path=path,
                     workers=max(1, torch.get_num_threads()))


def onnx_identity(student: AudioStudent, precision: str, weights: str | None = None) -> dict[str, Any]:
    """What a cached ONNX file depends on: the model's fingerprint and weights, the precision, the versions."""
    import onnx
    import onnxruntime as ort

    return {"export_version": EXPORT_VERSION, "opset": OPSET, "model": student.name,
            "fingerprint": student.fingerprint, "weights": weights or weights_digest(FeaturesTower(student)),
            "precision": precision, **({"recipe": INT8_RECIPE} if precision == "int8" else {}),
            "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}


def weights_digest(module: nn.Module) -> str:
    """A digest of every parameter and buffer of ``module`` as it is in memory."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_onnx(student: AudioStudent, precision: str, folder: Path, weights: str | None = None) -> Path:
    """The ONNX file of ``student``'s tower at ``precision``: from the cache if its record matches, else exported
    (and quantised) now and cached. ``weights``: :func:`weights_digest` of the tower, if known."""
    identity = onnx_identity(student, precision, weights)
    stem = f"{_safe(student.name)}-{precision}-{identity_key(identity)[:20]}"
    path, record = folder / f"{stem}.onnx", folder / f"{stem}.json"
    if path.exists() and record.exists():
        if _record_matches(record, path, identity):
            return path
        log.warning("the cached ONNX file %s does not match its record (damaged?); exporting it again", path)
    if precision == "int8":
        source = cached_onnx(student, "fp32", folder, identity["weights"])
        with atomic_path(path) as tmp:
            _quantize(source, tmp)
    else:
        with atomic_path(path) as tmp:
            export_onnx(student, tmp)
    write_json(record, {**identity, "sha256": _sha256(path), "bytes": path.stat().st_size})
    return path


def export_onnx(student: AudioStudent, path: Path) -> None:
    """Export the fp32 tower to ``path`` (dynamic batch); any failure is an :class:`ExportFailed`."""
    tower = FeaturesTower(student)  # the exporter runs it in eval mode and restores the mode after
    cfg = student.frontend_config
    example = torch.zeros(2, 1, cfg.n_frames, cfg.n_mels)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(tower, (example,), str(path), input_names=["features"], output_names=["embedding"],
                              dynamic_axes={"features": {0: "batch"}, "embedding": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporters raise many kinds
        raise ExportFailed(f"{type(exc).__name__}: {exc}") from exc


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet, level = logging.NullHandler(), root.level
    root.addHandler(quiet)  # it logs notes on the root logger: keep them from setting up a handler there
    root.setLevel(logging.ERROR)
    recipe = INT8_RECIPE
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType[recipe["weight_type"]],
                         per_channel=recipe["per_channel"], reduce_range=recipe["reduce_range"],
                         op_types_to_quantize=recipe["op_types"], extra_options=dict(recipe["extra_options"]))
    except Exception as exc:
        raise ExportFailed(f"int8 quantisation: {type(exc).__name__}: {exc}") from exc
    finally:
        root.removeHandler(quiet)
        root.setLevel(level)


def _record_matches(record: Path, path: Path, identity: dict[str, Any]) -> bool:
    try:
        saved = json.loads(record.read_text())
        return (all(saved.get(k) == v for k, v in identity.items()) and saved.get("bytes") == path.stat().st_size
                and saved.get("sha256") == _sha256(path))
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "model"
