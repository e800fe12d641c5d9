"""The paper's baselines: ways of getting audio into the teacher's space without distillation.

All start from the undistilled student (a CLAP model) and differ in how its audio embedding reaches
the teacher's text/image space:

* ``random``: a random linear map (Gaussian, seeded) from the student's space to the teacher's;
* ``mapping``: a linear map from the student's *text* space to the teacher's text space, learned by
  ridge regression on the training species' prompts, applied to the student's audio embeddings;
* ``chain``: zero-shot in two hops: audio -> species probabilities through the student's own text side,
  then the probability-weighted mix of the teacher's species text embeddings;
* ``undistilled``: the student as it is, for kNN and for its own zero-shot classification.
"""

from __future__ import annotations

import numpy as np

from birdbridge.utils.vectors import l2_normalize

BASELINES = ("random", "mapping", "chain", "undistilled")


def random_projection(audio: np.ndarray, out_dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((audio.shape[1], out_dim)).astype(np.float32) / np.sqrt(audio.shape[1])
    return l2_normalize(audio @ matrix)


def fit_text_mapping(source: np.ndarray, target: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """W minimising ||source W - target||² + ridge·||W||² (closed form), with a bias column."""
    x = np.hstack([source.astype(np.float64), np.ones((len(source), 1))])
    reg = ridge * np.eye(x.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(x.T @ x + reg, x.T @ target.astype(np.float64))


def apply_text_mapping(audio: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    x = np.hstack([audio.astype(np.float64), np.ones((len(audio), 1))])
    return l2_normalize((x @ mapping).astype(np.float32))


def zero_shot_chain(
    audio: np.ndarray, student_species_text: np.ndarray, teacher_species_text: np.ndarray, scale: float = 100.0
) -> np.ndarray:
    """softmax(scale · audio·student_text) weighted mix of the teacher's species text embeddings."""
    logits = scale * (audio @ student_species_text.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return l2_normalize((probs @ teacher_species_text).astype(np.float32))
