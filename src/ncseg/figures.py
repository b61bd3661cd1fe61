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


def _save(fig: Figure, path: Path, tight: bool = True) -> None:
    """`tight`: fit the layout to the labels (a draw more; figures with a fixed layout skip it)."""
    import matplotlib.pyplot as plt

    if tight:
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


def size_histogram(path: Path, particles: list[Particle], caption: str) -> None:
    """Edge lengths (sqrt(area), nm) of the particles away from the image border: those are measured whole.
    `caption` names the model and threshold, so a histogram copied into a talk still says what made it."""
    edges = [p.edge_length_nm for p in particles if p.edge_length_nm is not None and not p.touches_border]
    border = sum(p.touches_border for p in particles)
    fig, ax = _figure(5.0, 3.6)
    if edges:
        ax.hist(edges, bins=min(30, max(5, len(edges) // 4)), color="tab:blue", alpha=0.8)
        stats = f"n = {len(edges)}, edge {np.mean(edges):.2f} ± {np.std(edges):.2f} nm"
    else:
        stats = "no calibrated particles away from the border"
    ax.set_title(f"{stats}; {border} border particles excluded\n{caption}", fontsize=8)
    ax.set(xlabel="edge length sqrt(area) (nm)", ylabel="NCs")
    _save(fig, path)


INSIDE, BORDER = "#ffd000", "#00c8ff"  # yellow and cyan: apart for the common colour-vision deficiencies too
ID_TEXT = {"fontsize": 7, "fontweight": "bold", "ha": "center", "va": "center"}
OVERLAY_PX = (900, 1800)  # drawn width on screen: small images enlarged to read the ids, large ones kept sharp


def particle_overlay(
    path: Path,
    image: np.ndarray,
    labels: np.ndarray,
    particles: list[Particle],
    pixel_size_nm: float | None,
    title: str,
) -> None:
    """The image with every particle outlined along its pixel edges (the ImageJ ROI's outline) and its id (the CSV's
    `label`) at its centre; particles cut by the border dashed in another colour, as they are left out of sizes;
    a scale bar in nm. Outlines are vectors, so a large image drawn smaller keeps them; the image itself is resized
    to the drawn size once (not by matplotlib at every draw) and the layout is fixed, which keeps a 2048 px image
    with a thousand particles to seconds."""
    from matplotlib import patheffects
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D

    halo = [patheffects.withStroke(linewidth=2, foreground="black")]  # ids readable on bright NCs too
    h, w = labels.shape
    fig, ax = _overlay_figure(h, w)
    ax.imshow(_drawn(image, fig), extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    for border, colour, style in ((False, INSIDE, "solid"), (True, BORDER, "dashed")):
        chosen = [p for p in particles if p.touches_border == border]
        shapes = [_outline_xy(labels, p) for p in chosen]
        ax.add_collection(PolyCollection(shapes, closed=True, facecolors="none", edgecolors=colour, linestyles=style))
        for p in chosen:
            ax.text(p.centroid_x_px, p.centroid_y_px, str(p.label), color=colour, path_effects=halo, **ID_TEXT)
    if pixel_size_nm:
        _scale_bar(ax, w, pixel_size_nm)
    ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    key = [
        Line2D([], [], color=INSIDE, label="particle (id = CSV label)"),
        Line2D([], [], color=BORDER, ls="--", label="cut by the border: not in sizes"),
    ]
    fig.legend(handles=key, loc="lower center", ncol=2, fontsize=7, frameon=False)
    _save(fig, path, tight=False)


def _overlay_figure(h: int, w: int) -> tuple[Figure, Axes]:
    """Image width between OVERLAY_PX; fixed margins for the title (top) and the key (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi, top_in, bottom_in = 110, 0.45, 0.3
    width_in = min(max(w, OVERLAY_PX[0]), OVERLAY_PX[1]) / dpi
    height_in = width_in * h / w + top_in + bottom_in
    fig = plt.figure(figsize=(width_in, height_in), dpi=dpi)
    return fig, fig.add_axes((0.0, bottom_in / height_in, 1.0, 1 - (top_in + bottom_in) / height_in))


def _drawn(image: np.ndarray, fig: Figure) -> np.ndarray:
    """The image as grey RGB bytes at the size it is drawn, when that is smaller (anti-aliased, as a viewer would)."""
    from skimage.transform import resize

    h, w = image.shape
    width = round(fig.get_figwidth() * fig.dpi)
    if width < w:
        image = resize(image, (max(1, round(h * width / w)), width), anti_aliasing=True)
    return _grey(image)


def _outline_xy(labels: np.ndarray, particle: Particle) -> np.ndarray:
    """The particle's pixel-edge outline in image coordinates (pixel centres at integers, as imshow draws them)."""
    from ncseg.interop.imagej import outline

    r0, c0, r1, c1 = particle.bbox_min_row, particle.bbox_min_col, particle.bbox_max_row, particle.bbox_max_col
    corners = outline(labels[r0:r1, c0:c1] == particle.label)
    return corners + np.array([c0 - 0.5, r0 - 0.5])


def _scale_bar(ax: Axes, width_px: int, pixel_size_nm: float) -> None:
    """About a fifth of the field, rounded down to 1, 2 or 5 x 10^k nm, white on a dark box to read on any image."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    target = width_px * pixel_size_nm / 5
    decade = 10 ** np.floor(np.log10(target))
    nm = max(m * decade for m in (1, 2, 5) if m * decade <= target)
    bar = AnchoredSizeBar(
        ax.transData,
        nm / pixel_size_nm,
        f"{nm:g} nm",
        "lower right",
        color="white",
        size_vertical=max(1.0, width_px / 150),
        pad=0.4,
    )
    bar.patch.set(facecolor="black", alpha=0.6, edgecolor="none")
    ax.add_artist(bar)
