"""Probes: one logistic classifier per label, trained on the labelled windows of an archive.

**Examples.** For a label, the positives are the windows whose last label of that name is *yes*; the
negatives are the windows whose last label of it is *no*, the windows labelled *yes* for another label
(and not for this one), and ``background`` windows drawn at random from the unlabelled rest (weak
negatives: most windows of an archive hold none of a species; 0 turns them off).

**The fit** (:func:`~birdbridge.probes.logistic.fit_logistic`) is L2-regularised logistic regression on
the windows' unit embeddings. With ``text_prior`` it starts from the label's teacher text embedding (the
species read as a search does: :func:`birdbridge.archive.queries.text_query`) and the labels refine it.

**A probe is a unit vector in the teacher's space** (the direction of the weights) with a calibration:
a window's score is its cosine with the probe, and its confidence maps that cosine to a probability with
:class:`~birdbridge.models.calibration.Calibration` (fitted on the cross-validated cosines), as a
student's similarities are. So a probe can be searched like any query (``archive search`` with its
vector) and its detections follow the one detection rule of search.

**Cross-validated AP.** The examples are split into ``folds`` stratified folds (at most as many as the
smaller class has examples); each fold is scored by a probe trained on the others and the pooled
scores give the class's average precision. A label with fewer than two positives or negatives has none.
Probes are written to a JSON file (by default ``ARCHIVE/probes.json``) with the archive's teacher.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from birdbridge.archive.store import Archive
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.evaluate.metrics import average_precision
from birdbridge.models.calibration import DEFAULT_SENSITIVITY, Calibration, fit_calibration
from birdbridge.probes.logistic import DEFAULT_L2, DEFAULT_PRIOR_WEIGHT, fit_logistic
from birdbridge.utils.atomic import write_json
from birdbridge.utils.clock import now_iso
from birdbridge.utils.vectors import l2_normalize

FORMAT = "birdbridge-probes"
PROBES_FILE = "probes.json"
DEFAULT_BACKGROUND = 100
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Probe:
    """One label's classifier: a unit ``vector`` in the teacher's space and the ``calibration`` of its cosines."""

    label: str
    vector: np.ndarray
    calibration: Calibration
    positives: int
    negatives: int
    cv_ap: float | None  # cross-validated average precision (None: too few examples)
    cv_folds: int
    text_prior: bool
    prior_scale: float | None = None

    def confidence(self, cosines: np.ndarray, sensitivity: float = DEFAULT_SENSITIVITY) -> np.ndarray:
        """Calibrated confidences of windows' cosines with the probe."""
        return self.calibration.confidence(cosines, sensitivity)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vector"] = [round(float(v), 7) for v in self.vector]
        data["calibration"] = self.calibration.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> Probe:
        try:
            return cls(str(data["label"]), np.asarray(data["vector"], np.float32),
                       Calibration.from_dict(data["calibration"], source), int(data["positives"]),
                       int(data["negatives"]), None if data.get("cv_ap") is None else float(data["cv_ap"]),
                       int(data.get("cv_folds", 0)), bool(data.get("text_prior")), data.get("prior_scale"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(source, f"unreadable probe ({exc})", "train the probes again") from None


@dataclass
class ProbeSet:
    """Probes of one archive's teacher space, with how they were trained and the labels skipped (and why)."""

    teacher: dict[str, Any]
    probes: list[Probe]
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    created: str = ""

    def __getitem__(self, label: str) -> Probe:
        for probe in self.probes:
            if probe.label == label:
                return probe
        raise KeyError(f"no probe for {label!r} (probes: {', '.join(p.label for p in self.probes)})")

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.probes]

    def matrix(self) -> np.ndarray:
        """``[P, D]`` float32: the probes' unit vectors."""
        return np.stack([p.vector for p in self.probes]).astype(np.float32)

    def write(self, path: str | os.PathLike[str]) -> Path:
        data = {"format": FORMAT, "version": 1, "teacher": self.teacher, "created": self.created,
                "settings": self.settings, "skipped": self.skipped, "probes": [p.to_dict() for p in self.probes]}
        write_json(Path(path), data)
        return Path(path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ProbeSet:
        path = Path(path)
        if not path.is_file():
            raise InputError(str(path), "no such probes file", "train probes with `birdbridge archive probe train`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(str(path), f"unreadable ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(str(path), "not a birdbridge probes file", "train probes with "
                             "`birdbridge archive probe train`")
        probes = [Probe.from_dict(p, str(path)) for p in data.get("probes", [])]
        return cls(dict(data.get("teacher") or {}), probes, dict(data.get("settings") or {}),
                   dict(data.get("skipped") or {}), str(data.get("created", "")))


def default_probes_path(archive: Archive) -> Path:
    return archive.folder / PROBES_FILE


def labelled_examples(archive: Archive) -> dict[str, tuple[set[int], set[int]]]:
    """``{label: (positive rows, negative rows)}`` from the archive's labels (see the module docs), without the
    background draws."""
    latest = archive.labels(latest=True)
    yes: dict[str, set[int]] = {}
    no: dict[str, set[int]] = {}
    for lab in latest:
        (yes if lab.value else no).setdefault(lab.label, set()).add(lab.row)
        yes.setdefault(lab.label, set())
    any_yes = set().union(*yes.values()) if yes else set()
    out = {}
    for label, positives in yes.items():
        negatives = (no.get(label, set()) | (any_yes - positives)) - positives
        out[label] = (positives, negatives)
    return out


def train_probes(
    archive: Archive, *, labels: list[str] | None = None, text_prior: bool = False, l2: float = DEFAULT_L2,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT, background: int = DEFAULT_BACKGROUND, folds: int = DEFAULT_FOLDS,
    seed: int = 0, teacher: Any = None, taxonomy: Any = None, device: str | None = None,
    examples: dict[str, tuple[set[int], set[int]]] | None = None,
) -> ProbeSet:
    """Train a probe for each label of the archive (or of ``labels``); see the module docs. Labels without a
    positive or a negative are skipped and named in :attr:`ProbeSet.skipped`. ``examples`` replaces the
    archive's labels (``{label: (positive rows, negative rows)}``, e.g. for experiments)."""
    if folds < 2:
        raise BirdbridgeError(f"--folds must be at least 2, got {folds}")
    if background < 0:
        raise BirdbridgeError(f"--background must be 0 or more, got {background}")
    archive.check_searchable()
    found = labelled_examples(archive) if examples is None else examples
    if labels is not None:
        unknown = [name for name in labels if name not in found]
        if unknown:
            raise BirdbridgeError(f"archive {archive.folder} has no labels {unknown}; it has "
                                  f"{', '.join(sorted(found)) or 'none'} (add some with `birdbridge archive label`)")
        found = {name: found[name] for name in labels}
    if not found:
        raise BirdbridgeError(f"archive {archive.folder} has no labels; add some with `birdbridge archive label`")
    rng = np.random.default_rng(seed)
    labelled = set().union(*(p | n for p, n in found.values()))
    draws = _background(archive, labelled, background, rng)
    encoder = None
    if text_prior:
        from birdbridge.archive.queries import teacher_for

        encoder = teacher_for(archive, teacher, device)
    probes, skipped = [], {}
    for label, (positives, negatives) in sorted(found.items()):
        negatives = sorted(set(negatives) | set(draws))
        if not positives or not negatives:
            skipped[label] = f"{len(positives)} positive and {len(negatives)} negative windows; a probe needs both"
            continue
        rows = np.array(sorted(positives) + negatives, dtype=np.int64)
        y = np.array([True] * len(positives) + [False] * len(negatives))
        x = archive.vectors[rows].astype(np.float32)
        prior = None
        if encoder is not None:
            from birdbridge.archive.queries import text_query

            prior = text_query(archive, label, teacher=encoder, taxonomy=taxonomy)[0][0]
        probes.append(_probe(label, x, y, prior, l2=l2, prior_weight=prior_weight, folds=folds, rng=rng))
    settings = {"text_prior": text_prior, "l2": l2, "prior_weight": prior_weight, "background": background,
                "folds": folds, "seed": seed, "archive": str(archive.folder), "windows": len(archive)}
    return ProbeSet(archive.teacher, probes, settings, skipped, now_iso())


def _background(archive: Archive, labelled: set[int], n: int, rng: np.random.Generator) -> list[int]:
    """Up to ``n`` random unlabelled rows."""
    count = len(archive)
    if n == 0 or count == 0:
        return []
    picks = rng.choice(count, size=min(count, n + len(labelled)), replace=False)
    return sorted(int(r) for r in picks if int(r) not in labelled)[:n]


def _probe(label: str, x: np.ndarray, y: np.ndarray, prior: np.ndarray | None, *, l2: float, prior_weight: float,
           folds: int, rng: np.random.Generator) -> Probe:
    def direction(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, float | None]:
        fit = fit_logistic(xs, ys, l2=l2, prior=prior, prior_weight=prior_weight)
        return l2_normalize(fit.weights, what=f"the probe of {label!r}"), fit.prior_scale

    vector, scale = direction(x, y)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    k = min(folds, n_pos, n_neg)
    cv_ap = None
    if k >= 2:
        fold = np.empty(len(y), dtype=np.int64)
        for members in (np.flatnonzero(y), np.flatnonzero(~y)):
            fold[rng.permutation(members)] = np.arange(len(members)) % k
        held_out = np.empty(len(y), dtype=np.float64)
        for i in range(k):
            test = fold == i
            v, _ = direction(x[~test], y[~test])
            held_out[test] = x[test] @ v
        cv_ap = float(average_precision(held_out[None, :], y[None, :])[0])
        cosines, source = held_out, f"{k}-fold cross-validated cosines"
    else:
        cosines, source = x @ vector, "training cosines (too few examples to cross-validate)"
    calibration = fit_calibration(cosines, y, source=source)
    if calibration.slope <= 0:  # held-out scores that fall with the label: trust the training fit's ordering
        calibration = fit_calibration(x @ vector, y, source="training cosines (cross-validated fit fell)")
    return Probe(label, vector.astype(np.float32), calibration, n_pos, n_neg, cv_ap, k if k >= 2 else 0,
                 prior is not None, scale)


__all__ = ["DEFAULT_BACKGROUND", "DEFAULT_FOLDS", "PROBES_FILE", "Probe", "ProbeSet", "default_probes_path",
           "labelled_examples", "train_probes"]
