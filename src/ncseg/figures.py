"""Pictures a microscopist reads: mask overlays (the study's Figure 6) and the Jaccard-vs-threshold curve."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ncseg.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from PIL.Image import Image as PILImage
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont

    from ncseg.metrics import EpochLog
    from ncseg.particles import Particle

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

    fig.tight_layout()  # the layout fitted to the labels
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


def side_by_side(images: list[np.ndarray], height: int = 256) -> np.ndarray:
    """Images scaled to [0, 1], of any size, as grey tiles of one height side by side (`ncseg data check`'s pairs)."""
    from skimage.transform import resize

    size = [(height, max(1, round(im.shape[1] * height / im.shape[0]))) for im in images]
    return montage([_grey(resize(im, hw, anti_aliasing=True)) for im, hw in zip(images, size, strict=True)])


def size_histogram(path: Path, particles: list[Particle], caption: str, what: str = "NCs") -> None:
    """Edge lengths (sqrt(area), nm) of the particles (`what`: the class) away from the image border: those are
    measured whole. `caption` names the model and threshold, so a histogram copied into a talk still says what made
    it."""
    edges = [p.edge_length_nm for p in particles if p.edge_length_nm is not None and not p.touches_border]
    border = sum(p.touches_border for p in particles)
    fig, ax = _figure(5.0, 3.6)
    if edges:
        ax.hist(edges, bins=min(30, max(5, len(edges) // 4)), color="tab:blue", alpha=0.8)
        stats = f"n = {len(edges)}, edge {np.mean(edges):.2f} ± {np.std(edges):.2f} nm"
    else:
        stats = "no calibrated particles away from the border"
    ax.set_title(f"{stats}; {border} border particles excluded\n{caption}", fontsize=8)
    ax.set(xlabel="edge length sqrt(area) (nm)", ylabel=what)
    _save(fig, path)


INSIDE, BORDER = "#ffd000", "#00c8ff"  # yellow and cyan: apart for the common colour-vision deficiencies too
OVERLAY_PX = (900, 1800)  # drawn width on screen: small images enlarged to read the ids, large ones kept sharp
TITLE_PX, KEY_PX = 50, 33  # the bands above the image (title) and below it (key)
DASH = (6.0, 3.0)  # px drawn, px left out along a border particle's outline
LINE_PX = 2  # matplotlib's 1 pt line at 110 dpi, 1.5 px, rounded up


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
    a scale bar in nm. Drawn straight into the picture's pixels at its drawn size (PIL): as a matplotlib figure, a
    2048 px image with two thousand particles took 5-7 s, most of it laying out the ids."""
    from PIL import Image, ImageDraw

    h, w = labels.shape
    width = min(max(w, OVERLAY_PX[0]), OVERLAY_PX[1])
    scale, height = width / w, max(1, round(h * width / w))
    canvas = Image.new("RGB", (width, TITLE_PX + height + KEY_PX), "white")
    canvas.paste(_drawn(image, width, height), (0, TITLE_PX))
    draw = ImageDraw.Draw(canvas)
    origin = np.array([0.5 * scale, TITLE_PX + 0.5 * scale])  # pixel centres at integers, as the outlines have them
    for p in particles:
        corners = _outline_xy(labels, p) * scale + origin
        _polyline(draw, np.vstack([corners, corners[:1]]), BORDER if p.touches_border else INSIDE, p.touches_border)
    font = _font(11, bold=True)
    for p in particles:  # over every outline; a black halo keeps them readable on bright NCs
        x, y = np.array([p.centroid_x_px, p.centroid_y_px]) * scale + origin
        colour = BORDER if p.touches_border else INSIDE
        draw.text((x, y), str(p.label), fill=colour, font=font, anchor="mm", stroke_width=2, stroke_fill="black")
    if pixel_size_nm:
        _scale_bar(canvas, (width, TITLE_PX + height), w, pixel_size_nm)
    draw.multiline_text((width / 2, TITLE_PX / 2), title, fill="black", font=_font(12), anchor="mm", align="center")
    _key(draw, width, TITLE_PX + height + KEY_PX / 2)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG", compress_level=1)  # zlib's level 6 took longer than all the drawing


CLASS_ALPHA = 0.35  # a class's fill over the image: its colour reads, the image under it still does


def class_overlay(
    path: Path,
    image: np.ndarray,
    class_map: np.ndarray,
    names: Sequence[str],
    colours: Sequence[str],
    pixel_size_nm: float | None,
    title: str,
) -> None:
    """The image (scaled to [0, 1]) with each class of a K-class map (0 the background, left as it is) laid over it
    in its colour, semi-transparent, and outlined along its pixel edges in that colour; a key of the classes and a
    scale bar in nm, laid out as `particle_overlay`. Filled and outlined as arrays at the drawn size: a 2048 px
    image takes a fraction of a second, however many regions it holds."""
    from PIL import Image, ImageColor, ImageDraw

    if class_map.shape != image.shape:
        raise ValueError(f"class map of shape {class_map.shape} for an image of shape {image.shape}")
    if len(names) != len(colours):
        raise ValueError(f"{len(names)} class names but {len(colours)} colours")
    low, top = (int(class_map.min()), int(class_map.max())) if class_map.size else (0, 0)
    if low < 0 or top >= len(names):
        raise ValueError(f"class map holds classes {low}-{top}, but {len(names)} are named ({', '.join(names)})")
    h, w = class_map.shape
    width = min(max(w, OVERLAY_PX[0]), OVERLAY_PX[1])
    height = max(1, round(h * width / w))
    drawn = np.asarray(_drawn(image, width, height)).astype(np.float32)
    ids = np.asarray(Image.fromarray(class_map.astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST))
    palette = np.array([ImageColor.getrgb(c) for c in colours], np.float32)
    alpha = np.full(len(colours), CLASS_ALPHA, np.float32)
    alpha[0] = 0.0
    a = alpha[ids][..., None]
    rgb = drawn * (1 - a) + palette[ids] * a
    edge = _class_edges(ids) & (ids > 0)
    rgb[edge] = palette[ids[edge]]
    rows = _key_rows(list(zip(names, colours, strict=True))[1:], width)
    canvas = Image.new("RGB", (width, TITLE_PX + height + KEY_PX * len(rows)), "white")
    canvas.paste(Image.fromarray(np.round(rgb).astype(np.uint8)), (0, TITLE_PX))
    if pixel_size_nm:
        _scale_bar(canvas, (width, TITLE_PX + height), w, pixel_size_nm)
    draw = ImageDraw.Draw(canvas)
    draw.multiline_text((width / 2, TITLE_PX / 2), title, fill="black", font=_font(12), anchor="mm", align="center")
    _class_key(draw, rows, width, TITLE_PX + height)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG", compress_level=1)


def _class_edges(ids: np.ndarray) -> np.ndarray:
    """The pixels within LINE_PX of another class, on either side of every boundary (each side is drawn in its own
    class's colour); the image border is no boundary."""
    edge = np.zeros(ids.shape, bool)
    for d in range(1, LINE_PX + 1):
        rows, cols = ids[d:] != ids[:-d], ids[:, d:] != ids[:, :-d]
        edge[d:] |= rows
        edge[:-d] |= rows
        edge[:, d:] |= cols
        edge[:, :-d] |= cols
    return edge


SWATCH_PX, KEY_GAP = 14, 30


def _key_entry_px(name: str) -> float:
    return SWATCH_PX + 8 + _font(11).getlength(name) + KEY_GAP


def _key_rows(classes: list[tuple[str, str]], width: int) -> list[list[tuple[str, str]]]:
    """The (name, colour) key entries in rows that fit the width: one row for a few classes."""
    rows: list[list[tuple[str, str]]] = [[]]
    used = 0.0
    for entry in classes:
        if rows[-1] and used + _key_entry_px(entry[0]) - KEY_GAP > width:
            rows.append([])
            used = 0.0
        rows[-1].append(entry)
        used += _key_entry_px(entry[0])
    return rows


def _class_key(draw: ImageDraw, rows: list[list[tuple[str, str]]], width: int, top: float) -> None:
    """Each class as a swatch of its colour and its name, each row centred, from height `top` down."""
    font = _font(11)
    for index, row in enumerate(rows):
        y = top + KEY_PX * (index + 0.5)
        x = (width - sum(_key_entry_px(name) for name, _ in row) + KEY_GAP) / 2
        for name, colour in row:
            draw.rectangle(
                (x, y - SWATCH_PX / 2, x + SWATCH_PX - 1, y + SWATCH_PX / 2 - 1), fill=colour, outline="black"
            )
            draw.text((x + SWATCH_PX + 8, y), name, fill="black", font=font, anchor="lm")
            x += _key_entry_px(name)


def _drawn(image: np.ndarray, width: int, height: int) -> PILImage:
    """The image as grey pixels at its drawn size: averaged down (as a viewer shows a large image) or enlarged
    with each pixel a square (as the outlines on its pixel edges expect)."""
    from PIL import Image

    grey = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    smaller = width < image.shape[1]
    return grey.resize((width, height), Image.Resampling.BOX if smaller else Image.Resampling.NEAREST).convert("RGB")


def _outline_xy(labels: np.ndarray, particle: Particle) -> np.ndarray:
    """The particle's pixel-edge outline in image coordinates (pixel centres at integers)."""
    from ncseg.interop.imagej import outline

    r0, c0, r1, c1 = particle.bbox_min_row, particle.bbox_min_col, particle.bbox_max_row, particle.bbox_max_col
    corners = outline(labels[r0:r1, c0:c1] == particle.label)
    return corners + np.array([c0 - 0.5, r0 - 0.5])


def _polyline(draw: ImageDraw, points: np.ndarray, colour: str, dashed: bool) -> None:
    """`points` joined by lines, or with `dashed` by DASH-long pieces of them (PIL draws no dashes)."""
    if not dashed:
        draw.line(points.ravel().tolist(), fill=colour, width=LINE_PX)
        return
    along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    for begin in np.arange(0.0, along[-1], sum(DASH)):
        end = min(begin + DASH[0], along[-1])
        at = np.concatenate([[begin], along[(along > begin) & (along < end)], [end]])  # the corners a dash turns at
        dash = np.column_stack([np.interp(at, along, points[:, 0]), np.interp(at, along, points[:, 1])])
        draw.line(dash.ravel().tolist(), fill=colour, width=LINE_PX)


def _scale_bar(canvas: PILImage, corner: tuple[int, int], width_px: int, pixel_size_nm: float) -> None:
    """About a fifth of the field, rounded down to 1, 2 or 5 x 10^k nm, white on a dark box to read on any image,
    in the image's lower right `corner`."""
    from PIL import Image, ImageDraw

    target = width_px * pixel_size_nm / 5
    decade = 10 ** np.floor(np.log10(target))
    nm = max(m * decade for m in (1, 2, 5) if m * decade <= target)
    scale = canvas.width / width_px
    font, label = _font(15), f"{nm:g} nm"
    bar, thick = round(nm / pixel_size_nm * scale), max(1, round(max(1.0, width_px / 150) * scale))
    text = font.getbbox(label, anchor="mt")
    box_w, box_h = max(bar, text[2] - text[0]) + 12, thick + 4 + (text[3] - text[1]) + 12
    right, bottom = corner[0] - 7, corner[1] - 7
    left, top = right - box_w, bottom - box_h
    shaded = canvas.crop((left, top, right, bottom))
    canvas.paste(Image.blend(shaded, Image.new("RGB", shaded.size, "black"), 0.6), (left, top))
    draw, middle = ImageDraw.Draw(canvas), (left + right) / 2
    draw.rectangle((middle - bar / 2, top + 6, middle + bar / 2 - 1, top + 6 + thick - 1), fill="white")
    draw.text((middle, top + 6 + thick + 4), label, fill="white", font=font, anchor="mt")


def _key(draw: ImageDraw, width: int, y: float) -> None:
    """What the two colours mean, centred on one line at height `y`."""
    font = _font(11)
    entries = (
        (INSIDE, False, "particle (id = CSV label)"),
        (BORDER, True, "cut by the border: not in sizes"),
    )
    sample, gap = 28, 30
    total = sum(sample + 8 + font.getlength(text) for *_, text in entries) + gap
    x = (width - total) / 2
    for colour, dashed, text in entries:
        _polyline(draw, np.array([[x, y], [x + sample, y]]), colour, dashed)
        draw.text((x + sample + 8, y), text, fill="black", font=font, anchor="lm")
        x += sample + 8 + font.getlength(text) + gap


@cache
def _font(size: int, bold: bool = False) -> FreeTypeFont:
    """DejaVu Sans (matplotlib's, which the other figures use) at `size` px."""
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)
