"""Probabilities a microscopist can read as frequencies: temperature scaling and its check.

A network trained with a (Dice-weighted) loss and early stopping is rarely calibrated: of the pixels it calls
90 % NC, far fewer or far more than 90 % are. Temperature scaling (Guo et al. 2017) divides the logit by one
scalar T fitted on out-of-fold predictions by maximum likelihood. It is monotonic, so masks at a threshold
carried through the same transform are unchanged; what changes is that `output=probability`, per-particle
confidence and the threshold itself mean what they say.

The check is the expected calibration error over equal-width bins of the NC probability: the pixel-weighted
mean |mean probability - fraction NC| (the reliability diagram's distance from its diagonal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

EPS = 1e-6  # probabilities are clipped here before the logit: bf16 outputs reach exactly 0 and 1


def logit(prob: np.ndarray) -> np.ndarray:
    p = np.clip(prob.astype(np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply(prob: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probability: sigmoid(logit(p) / T). T = 1 returns `prob` itself (no clipping either)."""
    if temperature == 1.0:
        return prob
    return (1.0 / (1.0 + np.exp(-logit(prob) / temperature))).astype(np.float32)


def _pixels(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_pixels: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """All pixels, or an evenly drawn sample of `max_pixels` of them: enough for one scalar and fast."""
    p = np.concatenate([a.ravel() for a in probs])
    y = np.concatenate([m.ravel() for m in masks]).astype(bool)
    if p.size > max_pixels:
        pick = np.random.default_rng(seed).choice(p.size, size=max_pixels, replace=False)
        p, y = p[pick], y[pick]
    return p, y


def fit_temperature(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, max_pixels: int, seed: int) -> float:
    """The T that minimises the binary cross-entropy of sigmoid(logit / T) on these pixels."""
    p, y = _pixels(probs, masks, max_pixels, seed)
    z, sign = logit(p), np.where(y, 1.0, -1.0)

    def nll(log_t: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -sign * z / np.exp(log_t))))

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def apply_classes(prob: np.ndarray, temperature: float) -> np.ndarray:
    """A K-class model's calibrated (K, ...) probabilities: softmax(log p / T) over the class axis (its logits up to a
    per-pixel constant, which the softmax ignores). T = 1 returns `prob` itself."""
    if temperature == 1.0:
        return prob
    z = np.log(np.clip(prob.astype(np.float64), EPS, 1.0)) / temperature
    z -= z.max(axis=0, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=0, keepdims=True)
    return z.astype(np.float32)


def fit_class_temperature(
    probs: Sequence[np.ndarray], class_maps: Sequence[np.ndarray], *, max_pixels: int, seed: int
) -> float:
    """The T that minimises the cross-entropy of softmax(log p / T) against the true class, on (an even sample of)
    these pixels: the multi-class form of `fit_temperature`."""
    k = probs[0].shape[0]
    p = np.concatenate([a.reshape(k, -1) for a in probs], axis=1)
    y = np.concatenate([m.ravel() for m in class_maps]).astype(np.intp)
    if y.size > max_pixels:
        pick = np.random.default_rng(seed).choice(y.size, size=max_pixels, replace=False)
        p, y = p[:, pick], y[pick]
    z = np.log(np.clip(p.astype(np.float64), EPS, 1.0))
    true = z[y, np.arange(y.size)]

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        return float(np.mean(np.logaddexp.reduce(z / t, axis=0) - true / t))

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def top_label(prob: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A K-class prediction as the binary question calibration checks: the confidence in the argmax class, and
    whether that class is the true one (`ece` and `reliability` of these are the top-label calibration error)."""
    return prob.max(axis=0), prob.argmax(axis=0) == truth


def threshold_to(threshold: float, temperature: float) -> float:
    """A raw-probability threshold expressed on the calibrated scale (the same mask either way)."""
    return float(apply(np.array([threshold]), temperature)[0])


def reliability(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], bins: int) -> list[dict[str, float]]:
    """Per equal-width bin of the predicted probability: its centre, mean probability, observed NC fraction and
    pixel count (the reliability diagram's points)."""
    p = np.concatenate([a.ravel() for a in probs]).astype(np.float64)
    y = np.concatenate([m.ravel() for m in masks]).astype(bool)
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    mean_p = np.bincount(index, weights=p, minlength=bins)
    positive = np.bincount(index, weights=y, minlength=bins)
    return [
        {
            "bin_centre": (b + 0.5) / bins,
            "predicted": float(mean_p[b] / count[b]),
            "observed": float(positive[b] / count[b]),
            "pixels": int(count[b]),
        }
        for b in range(bins)
        if count[b]
    ]


def ece(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], bins: int) -> float:
    """Expected calibration error: pixel-weighted mean distance of the reliability diagram from its diagonal."""
    rows = reliability(probs, masks, bins)
    total = sum(r["pixels"] for r in rows)
    return float(sum(r["pixels"] * abs(r["predicted"] - r["observed"]) for r in rows) / total)
