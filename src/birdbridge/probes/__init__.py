"""Probes: small classifiers trained on an archive's labelled windows, scoring the whole archive.

One logistic classifier per label on the windows' embeddings (:mod:`~birdbridge.probes.logistic`),
optionally starting from the species' teacher text embedding; cross-validated AP and calibrated
confidences (:mod:`~birdbridge.probes.train`); detections over the archive in search's result formats
(:mod:`~birdbridge.probes.apply`).
"""

from __future__ import annotations

from birdbridge.utils.lazy import lazy_exports

_EXPORTS = {
    "LogisticFit": "birdbridge.probes.logistic",
    "fit_logistic": "birdbridge.probes.logistic",
    "Probe": "birdbridge.probes.train",
    "ProbeSet": "birdbridge.probes.train",
    "train_probes": "birdbridge.probes.train",
    "detections": "birdbridge.probes.apply",
    "score_archive": "birdbridge.probes.apply",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
