"""L2-regularised logistic regression, optionally around a prior direction, fitted exactly by Newton's method.

Without a prior it minimises ``sum(log-loss) + l2/2 * |w|^2`` over ``w`` and an unpenalised intercept,
the objective of scikit-learn's ``LogisticRegression(C=1/l2)``.

With a ``prior`` direction ``t`` (a unit vector: a species' text embedding in the teacher's space) the
weights are ``w = a * t + v`` and the penalty is ``l2/2 * (prior_weight * a^2 + |v|^2)``: a Gaussian
prior whose variance along ``t`` is ``1/prior_weight`` times that of any other direction. With few
labels the fit keeps ``t`` and learns its scale and offset (a calibrated zero-shot query); labels that
disagree with ``t`` pay for moving ``v``. It equals the plain fit on the features ``[t.x / sqrt(prior_weight),
x]``, which is how the tests check it against scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from birdbridge.errors import BirdbridgeError

#: Default penalty (scikit-learn's C = 10): unit embeddings have small coordinates, so C = 1 shrinks a lot.
DEFAULT_L2 = 0.1
#: Default cost of the prior's scale relative to any other direction's weight. At 1 the text direction can be
#: reached through both ``a`` and ``v``, so it costs half as much as any other. Chosen on a small demo archive (2
#: soundscapes), where 0.01 (a probe tied to the text query) ranked worse than 1 with 1, 4 and 16 labels a species.
DEFAULT_PRIOR_WEIGHT = 1.0


@dataclass(frozen=True)
class LogisticFit:
    """``logit = weights . x + intercept``; ``prior_scale`` is ``a`` (the part of the weights along the prior)."""

    weights: np.ndarray
    intercept: float
    prior_scale: float | None
    iterations: int


def fit_logistic(
    x: np.ndarray, y: np.ndarray, *, l2: float = DEFAULT_L2, prior: np.ndarray | None = None,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT, max_iter: int = 100, tol: float = 1e-10,
) -> LogisticFit:
    """Fit ``[n, D]`` features ``x`` to 0/1 labels ``y`` (see the module docs). Needs both classes."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(y).astype(bool)
    if x.ndim != 2 or len(x) != len(t):
        raise BirdbridgeError(f"logistic fit needs [n, D] features and n labels, got {x.shape} and {t.shape}")
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == len(t):
        raise BirdbridgeError(f"a probe needs positive and negative examples, got {n_pos} positive and "
                              f"{len(t) - n_pos} negative")
    if not l2 > 0 or not prior_weight > 0:
        raise BirdbridgeError(f"l2 ({l2}) and prior_weight ({prior_weight}) must be positive")
    penalty = np.full(x.shape[1], float(l2))
    if prior is not None:
        direction = np.asarray(prior, dtype=np.float64).reshape(-1)
        if direction.shape[0] != x.shape[1]:
            raise BirdbridgeError(f"the prior has {direction.shape[0]} dimensions, the features {x.shape[1]}")
        x = np.concatenate([(x @ direction)[:, None], x], axis=1)
        penalty = np.concatenate([[l2 * prior_weight], penalty])
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    penalty = np.concatenate([penalty, [0.0]])  # the intercept is not penalised
    target = t.astype(np.float64)
    beta = np.zeros(design.shape[1])
    beta[-1] = math.log(n_pos / (len(t) - n_pos))
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        p = _sigmoid(design @ beta)
        grad = design.T @ (p - target) + penalty * beta
        hess = (design * (p * (1.0 - p))[:, None]).T @ design + np.diag(penalty) + 1e-12 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= _damped(step)
        if np.max(np.abs(step)) < tol:
            break
    if prior is None:
        return LogisticFit(beta[:-1], float(beta[-1]), None, iterations)
    scale = float(beta[0])
    return LogisticFit(scale * direction + beta[1:-1], float(beta[-1]), scale, iterations)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


def _damped(step: np.ndarray, limit: float = 50.0) -> np.ndarray:
    """Newton steps capped in size: the first steps of a nearly separable fit can overshoot."""
    size = float(np.max(np.abs(step)))
    return step if size <= limit else step * (limit / size)


__all__ = ["DEFAULT_L2", "DEFAULT_PRIOR_WEIGHT", "LogisticFit", "fit_logistic"]
