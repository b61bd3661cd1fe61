"""Pictures a microscopist reads: mask overlays (the study's Figure 6) and the Jaccard-vs-threshold curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ncseg.io.atomic import atomic_path

TP, FP, FN = (60, 200, 60), (230, 40, 40), (40, 110, 255)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def comparison(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Side by side: the image, the reference (ImageJ) mask, the predicted mask with errors coloured
    (green: agreed NC pixels, red: predicted but not in the reference, blue: missed)."""
    ref = _grey(truth.astype(np.float32))
    errors = _grey(image) // 3
    errors[pred & truth], errors[pred & ~truth], errors[~pred & truth] = TP, FP, FN
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([_grey(image), gap, ref, gap, errors], axis=1)


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


def threshold_curve(path: Path, grid: list[float], curve: np.ndarray, chosen: float, study: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
    ax.plot(grid, curve, marker="o", ms=3)
    ax.axvline(chosen, color="tab:green", ls="--", label=f"chosen {chosen:.2f}")
    ax.axvline(study, color="tab:red", ls=":", label=f"study {study:.2f}")
    ax.set(xlabel="probability threshold", ylabel="mean Jaccard (out-of-fold)", ylim=(0, 1))
    ax.legend(loc="lower center")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def montage(tiles: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """RGB tiles of equal height side by side, white gaps between."""
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    row = [part for tile in tiles for part in (tile, spacer)][:-1]
    return np.concatenate(row, axis=1)
