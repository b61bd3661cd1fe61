"""Pictures a microscopist reads: mask overlays (the study's Figure 6) and the Jaccard-vs-threshold curve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ncseg.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ncseg.particles import Particle
    from ncseg.training.loop import EpochLog

TP, FP, FN = (60, 200, 60), (230, 40, 40), (40, 110, 255)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def comparison_panel(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Side by side: the image, the reference (ImageJ) mask, the predicted mask with errors coloured
    (green: agreed NC pixels, red: predicted but not in the reference, blue: missed)."""
    ref = _grey(truth.astype(np.float32))
    errors = _grey(image) // 3
    errors[pred & truth], errors[pred & ~truth], errors[~pred & truth] = TP, FP, FN
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([_grey(image), gap, ref, gap, errors], axis=1)


def comparison(path: Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, title: str) -> None:
    """The study's Figure 6 for one image, readable on its own: a title (image, fold, score) and a colour key."""
    from matplotlib.patches import Patch

    panel = comparison_panel(image, truth, pred)
    fig, ax = _figure(width_in=min(15.0, 2.0 + panel.shape[1] / 110), height_in=1.2 + panel.shape[0] / 110)
    ax.imshow(panel, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title}\nimage | reference mask | prediction", fontsize=9)
    colours = ((TP, "agreed NC"), (FP, "false NC"), (FN, "missed NC"))
    key = [Patch(color=np.array(c) / 255, label=label) for c, label in colours]
    fig.legend(handles=key, loc="lower center", ncol=3, fontsize=8, frameon=False)
    _save(fig, path)


def learning_curves(path: Path, histories: dict[str, list[EpochLog]]) -> None:
    """Inner-validation Jaccard (tuned threshold) per epoch, one line per fold, each ending where it stopped."""
    fig, ax = _figure(5.0, 3.4)
    for label, history in histories.items():
        ax.plot([h.epoch for h in history], [h.val_jaccard_tuned for h in history], marker="o", ms=2, label=label)
    ax.set(xlabel="epoch", ylabel="inner-validation Jaccard (tuned threshold)", ylim=(0, 1))
    ax.legend(fontsize=8)
    _save(fig, path)


def _figure(width_in: float, height_in: float) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width_in, height_in), dpi=110)


def _save(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def outline(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 210, 0)) -> np.ndarray:
    """The image with the mask's boundary drawn on it."""
    from skimage.segmentation import find_boundaries

    rgb = _grey(image)
    rgb[find_boundaries(mask, mode="inner")] = color
    return rgb


def save_png(path: Path, rgb: np.ndarray) -> None:
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".png")


def threshold_curve(
    path: Path, grid: list[float], curve: np.ndarray, chosen: float, study: tuple[float, float]
) -> None:
    """Jaccard against the threshold on calibrated probabilities; `study` is the study's raw-output cut (its
    value, and where it falls on the calibrated scale)."""
    fig, ax = _figure(5.0, 3.4)
    ax.plot(grid, curve, marker="o", ms=3)
    ax.axvline(chosen, color="tab:green", ls="--", label=f"chosen {chosen:.2f}")
    ax.axvline(study[1], color="tab:red", ls=":", label=f"study {study[0]:.2f} (raw output)")
    ax.set(xlabel="threshold (calibrated probability)", ylabel="mean Jaccard (out-of-fold)", ylim=(0, 1))
    ax.legend(loc="lower center")
    _save(fig, path)


def reliability_diagram(
    path: Path, curves: dict[str, list[dict[str, float]]], ece: tuple[float, float], temperature: float
) -> None:
    """Observed NC fraction against predicted probability (out-of-fold), before and after temperature scaling:
    a calibrated model lies on the diagonal."""
    fig, ax = _figure(4.2, 4.0)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    labels = {"raw": f"raw (ECE {ece[0]:.3f})", "calibrated": f"T = {temperature:.2f} (ECE {ece[1]:.3f})"}
    for key, rows in curves.items():
        ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", ms=3, label=labels[key])
    ax.set(xlabel="predicted NC probability", ylabel="observed NC fraction", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("reliability (out-of-fold pixels)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def montage(tiles: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """RGB tiles of equal height side by side, white gaps between."""
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    row = [part for tile in tiles for part in (tile, spacer)][:-1]
    return np.concatenate(row, axis=1)


def size_histogram(path: Path, particles: list[Particle]) -> None:
    """Edge lengths (sqrt(area), nm) of the particles away from the image border: those are measured whole."""
    edges = [p.edge_length_nm for p in particles if p.edge_length_nm is not None and not p.touches_border]
    fig, ax = _figure(5.0, 3.4)
    if edges:
        ax.hist(edges, bins=min(30, max(5, len(edges) // 4)), color="tab:blue", alpha=0.8)
        ax.set_title(f"n = {len(edges)}, edge {np.mean(edges):.2f} ± {np.std(edges):.2f} nm")
    else:
        ax.set_title("no calibrated particles away from the border")
    ax.set(xlabel="edge length sqrt(area) (nm)", ylabel="NCs")
    _save(fig, path)
