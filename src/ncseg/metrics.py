"""Pixel and object scores of a predicted NC mask against the reference mask.

Jaccard (intersection over union) is the study's score. Counting users also need object-level scores: NCs
matched one-to-one at IoU >= 0.5 give object precision, recall and F1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage.measure import label

from ncseg.labels import LabelSet

OBJECT_IOU = 0.5


def _ratio(num: float, den: float, empty: float = 1.0) -> float:
    """num/den, with `empty` where the denominator is 0 (e.g. both masks empty: perfect agreement)."""
    return float(num / den) if den else empty


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    inter = np.count_nonzero(pred & truth)
    return _ratio(inter, np.count_nonzero(pred | truth))


def class_jaccards(pred: np.ndarray, truth: np.ndarray, ids: tuple[int, ...]) -> list[float]:
    """Each class's Jaccard between two class maps (1 where an image has the class in neither)."""
    return [jaccard(pred == k, truth == k) for k in ids]


@dataclass(frozen=True)
class Scores:
    jaccard: float
    dice: float
    precision: float
    recall: float
    object_precision: float
    object_recall: float
    object_f1: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def match_objects(pred: np.ndarray, truth: np.ndarray, iou: float = OBJECT_IOU) -> tuple[int, int, int]:
    """(matched, predicted, true) object counts; greedy one-to-one matching by descending IoU."""
    pred_labels, n_pred = label(pred, return_num=True, connectivity=1)
    true_labels, n_true = label(truth, return_num=True, connectivity=1)
    both = (pred_labels > 0) & (true_labels > 0)
    pairs, overlap = np.unique(np.stack([pred_labels[both], true_labels[both]]), axis=1, return_counts=True)
    pred_area = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    true_area = np.bincount(true_labels.ravel(), minlength=n_true + 1)
    ious = overlap / (pred_area[pairs[0]] + true_area[pairs[1]] - overlap) if overlap.size else overlap
    used_pred, used_true = set(), set()
    for k in np.argsort(-ious, kind="stable"):
        p, t = int(pairs[0, k]), int(pairs[1, k])
        if ious[k] >= iou and p not in used_pred and t not in used_true:
            used_pred.add(p)
            used_true.add(t)
    return len(used_pred), n_pred, n_true


def equivalent_diameters(mask: np.ndarray) -> np.ndarray:
    """Each connected object's equivalent-circle diameter in px (objects as `match_objects` counts them)."""
    areas = np.bincount(label(mask, connectivity=1).ravel())[1:]
    return np.sqrt(4 * areas[areas > 0] / np.pi)


def diameter_error(preds: list[np.ndarray], truths: list[np.ndarray]) -> float | None:
    """The signed relative error of the mean object diameter, objects pooled over the images (+0.1: they come out
    10 % larger on average). Objects are connected components as the object F1 counts them, unfiltered: the
    particle table of `ncseg predict` splits touching particles and drops those under its minimum area, so its
    mean can differ. None where the reference holds no object; -1 where the prediction holds none."""
    true = np.concatenate([equivalent_diameters(t) for t in truths])
    if not true.size:
        return None
    pred = np.concatenate([equivalent_diameters(p) for p in preds])
    return float(pred.mean() / true.mean() - 1) if pred.size else -1.0


def score(pred: np.ndarray, truth: np.ndarray) -> Scores:
    pred, truth = pred.astype(bool), truth.astype(bool)
    tp = np.count_nonzero(pred & truth)
    fp = np.count_nonzero(pred & ~truth)
    fn = np.count_nonzero(~pred & truth)
    matched, n_pred, n_true = match_objects(pred, truth)
    obj_p, obj_r = _ratio(matched, n_pred), _ratio(matched, n_true)
    return Scores(
        jaccard=_ratio(tp, tp + fp + fn),
        dice=_ratio(2 * tp, 2 * tp + fp + fn),
        precision=_ratio(tp, tp + fp, empty=1.0 if fn == 0 else 0.0),
        recall=_ratio(tp, tp + fn),
        object_precision=obj_p,
        object_recall=obj_r,
        object_f1=_ratio(2 * obj_p * obj_r, obj_p + obj_r, empty=0.0),
    )


def class_scores(pred: np.ndarray, truth: np.ndarray, labels: LabelSet) -> dict[int, Scores]:
    """Each foreground class of two class maps scored as its own mask."""
    return {k: score(pred == k, truth == k) for k in labels.foreground}


def headline(per_class: dict[int, Scores], labels: LabelSet) -> Scores:
    """One image's scores of a K-class prediction: the pixel scores averaged over the foreground classes, the
    object scores over the particle classes (a support has no objects to count)."""
    pixel = ("jaccard", "dice", "precision", "recall")
    counted = [k for k in per_class if k in labels.particle_ids] or list(per_class)
    return Scores(
        **{
            key: float(np.mean([getattr(per_class[k], key) for k in (per_class if key in pixel else counted)]))
            for key in Scores.__dataclass_fields__
        }
    )


def mean_scores(scores: list[Scores]) -> dict[str, float]:
    return {key: float(np.mean([s.as_dict()[key] for s in scores])) for key in Scores.__dataclass_fields__}


def jaccard_sweep(probs: list[np.ndarray], truths: list[np.ndarray], grid: list[float]) -> np.ndarray:
    """Mean per-image Jaccard at each threshold of `grid` (probability > threshold is NC)."""
    return np.array([np.mean([jaccard(p > t, m) for p, m in zip(probs, truths, strict=True)]) for t in grid])


def best_threshold(probs: list[np.ndarray], truths: list[np.ndarray], grid: list[float]) -> float:
    """The grid threshold with the highest mean Jaccard; ties go to the one nearest the grid's middle."""
    curve = jaccard_sweep(probs, truths, grid)
    best = np.flatnonzero(np.isclose(curve, curve.max(), rtol=0, atol=1e-12))
    middle = (len(grid) - 1) / 2
    return grid[int(best[np.argmin(np.abs(best - middle))])]


@dataclass(frozen=True)
class EpochLog:
    """One training epoch's curves: what the fold run logs per step and the learning-curve plot draws."""

    epoch: int
    train_loss: float
    val_loss: float
    val_jaccard_study: float  # at the study's fixed threshold (0.75)
    val_jaccard_tuned: float  # at the inner-validation images' best threshold: what early stopping watches
