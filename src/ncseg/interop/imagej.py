"""The ImageJ/Fiji round trip: particles out as a RoiSet, corrected RoiSets back in as masks.

Each particle becomes one traced polygon along its pixels' outer edges (ImageJ's own "Traced" ROI type, what the
wand tool makes), named by its label. ImageJ fills a polygon by taking every pixel whose centre lies inside, so an
outline on pixel edges fills back to exactly the particle's pixels, and two touching particles share an edge: no
merge, no new gap (the 1-2 px losses of tools that outline through pixel centres do not happen). RoiSets read back
are rasterised by the same centre rule. Only area ROIs that cover a pixel make a mask: a RoiSet holding a line,
point or text ROI, or a flat one, is refused with the member named, since it is more likely a slip in the ROI
Manager than a particle.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from roifile import ROI_SUBTYPE, ROI_TYPE, ImagejRoi, roiwrite
from scipy.ndimage import find_objects
from skimage.draw import ellipse

from ncseg.io.atomic import atomic_path
from ncseg.io.images import ImageError

POLYGONS = {ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED}
AREAS = POLYGONS | {ROI_TYPE.RECT, ROI_TYPE.OVAL}
NOT_AREAS = {ROI_SUBTYPE.TEXT, ROI_SUBTYPE.ARROW, ROI_SUBTYPE.IMAGE}  # drawn as rectangles or lines, not areas
ROI_SUFFIXES = {".zip", ".roi"}
# What one RoiSet may hold, checked on the zip's directory before a member is decoded: ROI k fills label k of a
# uint16 image, and a particle's traced outline takes a few hundred bytes (64 MiB: 1 KB for each of the most ROIs).
MAX_ROIS = 2**16 - 1
MAX_BYTES = 64 * 2**20
# Pixel rows crossed by all outlines together, what filling them costs (~90 bytes and 0.5 µs each): a particle
# crosses tens, a hand-drawn region thousands; only an outline zigzagging across the image thousands of times nears it.
MAX_CROSSINGS = 2**23

Corner = tuple[int, int]  # (x, y) on the grid of pixel corners, y down


def _boundary_edges(region: np.ndarray) -> dict[Corner, list[Corner]]:
    """Directed pixel edges between the region and the rest, oriented so the region lies to their right."""
    padded = np.pad(region, 1)
    inside = padded[1:-1, 1:-1]
    edges: dict[Corner, list[Corner]] = defaultdict(list)
    sides = (
        (padded[:-2, 1:-1], (0, 0), (1, 0)),  # background above: the top edge, west to east
        (padded[1:-1, 2:], (1, 0), (1, 1)),  # right edge, north to south
        (padded[2:, 1:-1], (1, 1), (0, 1)),  # bottom edge, east to west
        (padded[1:-1, :-2], (0, 1), (0, 0)),  # left edge, south to north
    )
    for neighbour, start, end in sides:
        rows, cols = np.nonzero(inside & ~neighbour)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            edges[(c + start[0], r + start[1])].append((c + end[0], r + end[1]))
    return edges


def _next_corner(here: Corner, heading: Corner, options: list[Corner]) -> Corner:
    """Where two pixels touch only at a corner, turn towards the region (right before straight before left), so
    diagonal neighbours stay separate outlines, as 4-connected particles are."""
    right, left = (-heading[1], heading[0]), (heading[1], -heading[0])
    for turn in (right, heading, left):
        step = (here[0] + turn[0], here[1] + turn[1])
        if step in options:
            return step
    return options[0]


def _loops(edges: dict[Corner, list[Corner]]) -> list[list[Corner]]:
    loops = []
    while edges:
        start = min(edges)
        loop, here = [start], start
        heading: Corner = (0, 0)
        while True:
            options = edges[here]
            step = _next_corner(here, heading, options) if heading != (0, 0) else options[0]
            options.remove(step)
            if not options:
                del edges[here]
            heading, here = (step[0] - here[0], step[1] - here[1]), step
            if here == start:
                break
            loop.append(here)
        loops.append(loop)
    return loops


def _area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _corners_only(loop: np.ndarray) -> np.ndarray:
    """Drop the vertices where the outline runs straight on: ImageJ stores and draws fewer points."""
    before, after = np.roll(loop, 1, axis=0), np.roll(loop, -1, axis=0)
    turns = np.any((loop - before) != (after - loop), axis=1)
    return loop[turns]


def outline(region: np.ndarray) -> np.ndarray:
    """The outer outline of a boolean region as (x, y) pixel-corner vertices, clockwise on screen. A region of
    several 4-connected pieces gets the outline of its largest; holes are not outlined (a polygon has none)."""
    if not region.any():
        raise ValueError("an empty region has no outline")
    loops = [np.array(loop, dtype=np.int32) for loop in _loops(_boundary_edges(region))]
    outer = max(loops, key=_area)  # clockwise outer outlines have positive area in y-down coordinates
    return _corners_only(outer)


def labels_to_rois(labels: np.ndarray, prefix: str = "") -> list[ImagejRoi]:
    """One traced ROI per label, named by the label (the `label` column of the particle table) after `prefix`
    ("pt-" names label 3 "pt-3"), so the ROIs of several classes can share one ROI Manager. Each is outlined
    within its own bounding box: over the whole image, tens of thousands of particles took minutes."""
    rois = []
    for label, box in enumerate(find_objects(labels), 1):
        if box is None:
            continue
        corners = outline(labels[box] == label) + np.array([box[1].start, box[0].start])
        roi = ImagejRoi.frompoints(corners.astype(np.float32), name=f"{prefix}{label}")
        roi.roitype = ROI_TYPE.TRACED
        rois.append(roi)
    return rois


def write_roiset(path: Path, labels: np.ndarray, prefix: str = "") -> int:
    """An ImageJ RoiSet .zip (opens in Fiji's ROI Manager over the image), its ROIs named `prefix` + label;
    returns how many ROIs it holds."""
    rois = labels_to_rois(labels, prefix)
    with atomic_path(path) as tmp:
        tmp.unlink()  # roifile appends to an existing zip
        if rois:
            roiwrite(tmp, rois)
        else:
            tmp.write_bytes(_EMPTY_ZIP)
    return len(rois)


_EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18  # a zip archive with no members: an image without particles


def read_rois(path: Path) -> list[ImagejRoi]:
    """The area ROIs of a RoiSet .zip or a single .roi file. Every ROI that cannot be part of a mask (not a ROI,
    a line or point, one that covers no pixel) is refused at once, each on its own line as `zipfile:member`."""
    decoded = _decode_roiset(path) if path.suffix.lower() == ".zip" else _decode_file(path)
    pixels = iter(_pixel_counts(path, [roi for _, roi in decoded if isinstance(roi, ImagejRoi)]))
    problems = []
    for where, roi in decoded:
        why = roi if isinstance(roi, str) else _problem(roi, next(pixels))
        if why:
            problems.append(f"{where}: {why}")
    if problems:
        raise ImageError(
            path,
            "ROIs that cannot be a mask (delete or redraw them in Fiji's ROI Manager and save the RoiSet again):\n  "
            + "\n  ".join(problems),
        )
    return [roi for _, roi in decoded if isinstance(roi, ImagejRoi)]


def _decode_roiset(path: Path) -> list[tuple[str, ImagejRoi | str]]:
    """Each member, decoded or why not. The count and the unpacked size are checked on the zip's directory first:
    a zip of a few MB can hold a million members or gigabytes of zeros."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            _check_size(path, len(members), sum(m.file_size for m in members))
            return [_decode(f"{path}:{m.filename}", partial(archive.read, m)) for m in members]
    except (zipfile.BadZipFile, OSError) as err:
        raise ImageError(path, f"not an ImageJ ROI file or RoiSet ({err})") from err


def _decode_file(path: Path) -> list[tuple[str, ImagejRoi | str]]:
    _check_size(path, 1, path.stat().st_size)
    return [_decode(str(path), path.read_bytes)]


def _check_size(path: Path, members: int, size: int) -> None:
    if members > MAX_ROIS:
        raise ImageError(path, f"{members} members; a RoiSet holds at most {MAX_ROIS} ROIs (a uint16 label image)")
    if size > MAX_BYTES:
        raise ImageError(path, f"{size / 2**20:.1f} MiB of ROIs unpacked; a RoiSet may hold {MAX_BYTES // 2**20} MiB")


def _decode(where: str, read: Callable[[], bytes]) -> tuple[str, ImagejRoi | str]:
    try:
        roi = ImagejRoi.frombytes(read())
        finite = bool(np.isfinite(_edges(roi)).all())
    except Exception as err:  # roifile raises ValueError, struct.error, TypeError…; a damaged member zip/zlib errors
        return where, f"not an ImageJ ROI ({err})"
    return where, roi if finite else "not an ImageJ ROI (coordinates that are not numbers)"


def _problem(roi: ImagejRoi, pixels: int) -> str | None:
    """Why a decoded ROI cannot be part of a mask, or None. One that covers no pixel centre (a flat rectangle, a
    polygon of fewer than 3 points or points on a line) is refused, not left out: like a line or point it is more
    likely a slip in the ROI Manager than a particle, and left out it would vanish from the mask unseen."""
    kind = (ROI_SUBTYPE(roi.subtype) if roi.subtype in NOT_AREAS else ROI_TYPE(roi.roitype)).name.lower()
    if not _encloses_area(roi):
        return f"{kind} ROI, encloses no area"
    if not pixels:
        size = f"{roi.n_coordinates} coordinates" if roi.roitype in POLYGONS else f"{_width(roi)} x {_height(roi)} px"
        return f"{kind} ROI, covers no pixel centre ({size})"
    return None


def _encloses_area(roi: ImagejRoi) -> bool:
    return roi.composite or (roi.roitype in AREAS and roi.subtype not in NOT_AREAS)


def _pixel_counts(path: Path, rois: list[ImagejRoi]) -> list[int]:
    """How many pixels each ROI fills on an unbounded image; ovals count by their size, the rest by their outline's
    crossings, all ROIs at once."""
    edges, owner = _edge_table(rois)
    first, count = _row_span(edges, None)
    if count.sum() > MAX_CROSSINGS:
        raise ImageError(path, f"its outlines cross {count.sum():.0f} pixel rows; a RoiSet may cross {MAX_CROSSINGS}")
    spans = _spans(edges, owner, first, count.astype(np.int64), None)
    pixels = np.bincount(spans[0], weights=spans[3] - spans[2], minlength=len(rois))
    return [_width(roi) * _height(roi) if _is_oval(roi) else int(n) for roi, n in zip(rois, pixels, strict=True)]


def _width(roi: ImagejRoi) -> int:
    return roi.right - roi.left


def _height(roi: ImagejRoi) -> int:
    return roi.bottom - roi.top


def _is_oval(roi: ImagejRoi) -> bool:
    return roi.roitype == ROI_TYPE.OVAL and not roi.composite


def _edges(roi: ImagejRoi) -> np.ndarray:
    """The outline as edges (x, y, previous x, previous y), shifted so pixel centres lie on integers; an oval has
    none (it is filled as an ellipse). A composite shape (with holes, ImageJ's "Create Selection" of a mask) gives
    the edges of all its paths, which fill even-odd."""
    if roi.composite:
        paths = roi.coordinates(multi=True)
    elif roi.roitype == ROI_TYPE.RECT:
        paths = [[[roi.left, roi.top], [roi.right, roi.top], [roi.right, roi.bottom], [roi.left, roi.bottom]]]
    else:
        paths = [] if _is_oval(roi) else [roi.coordinates()]
    vertices = [np.asarray(p, np.float64).reshape(-1, 2) - 0.5 for p in paths]
    return np.concatenate([np.hstack([v, np.roll(v, 1, axis=0)]) for v in vertices] or [np.zeros((0, 4))])


def _edge_table(rois: list[ImagejRoi]) -> tuple[np.ndarray, np.ndarray]:
    """All ROIs' edges and the index of the ROI each belongs to."""
    edges = [_edges(roi) for roi in rois]
    owner = np.repeat(np.arange(len(rois)), [len(e) for e in edges])
    return np.concatenate([*edges, np.zeros((0, 4))]), owner


def _row_span(edges: np.ndarray, height: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per edge, the first pixel row whose centre line it crosses and how many (floats: an outline far off the
    image is counted before any clipping). As in ImageJ, an edge spans the rows from its upper end (included) to
    its lower one, so a closed outline crosses each row an even number of times."""
    low, high = np.ceil(np.minimum(edges[:, 1], edges[:, 3])), np.ceil(np.maximum(edges[:, 1], edges[:, 3]))
    if height is not None:
        low, high = np.clip(low, 0, height), np.clip(high, 0, height)
    return low, np.maximum(high - low, 0)


def _spans(
    edges: np.ndarray, owner: np.ndarray, first: np.ndarray, count: np.ndarray, width: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ROI, row, first column, end column) of the runs of pixels that ImageJ's PolygonFiller fills: in each row,
    the pixels between the 1st and 2nd crossing of the row's centre line, the 3rd and 4th, … (even-odd), a centre
    exactly on a crossing being outside a left edge and inside a right one (ImageJ's +1e-8 before rounding), so
    two ROIs sharing an edge never both take a pixel. Linear in the crossings, where skimage's point-in-polygon
    test pixel by pixel costs pixels x vertices (29 s for one freehand outline of 10 000 points)."""
    edge = np.repeat(np.arange(len(edges)), count)
    row = np.repeat(first, count) + (np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count))
    x, y, x_before, y_before = edges[edge].T
    at = (x_before - x) * (row - y) / (y_before - y) + x  # exact where the crossing is on a pixel centre
    order = np.lexsort((at, row, owner[edge]))
    roi, row, at = owner[edge][order][0::2], row[order][0::2], at[order]
    start, stop = np.floor(at[0::2] + 1e-8) + 1, np.floor(at[1::2] + 1e-8) + 1
    if width is not None:
        start, stop = np.clip(start, 0, width), np.clip(stop, 0, width)
    keep = stop > start
    return roi[keep], row[keep], start[keep], stop[keep]


def rois_to_labels(rois: list[ImagejRoi], shape: tuple[int, int]) -> np.ndarray:
    """A uint16 label image, ROI k (in file order) filled with k; where ROIs overlap the later one wins. A pixel is
    inside when its centre (x + 0.5, y + 0.5) is, as ImageJ fills."""
    labels = np.zeros(shape, np.uint16)
    edges, owner = _edge_table(rois)
    first, count = _row_span(edges, shape[0])
    spans = [a.astype(np.int64) for a in _spans(edges, owner, first, count.astype(np.int64), shape[1])]
    bounds = np.searchsorted(spans[0], np.arange(len(rois) + 1)).tolist()
    for index, (roi, begin, end) in enumerate(zip(rois, bounds, bounds[1:], strict=False), 1):
        labels[_ellipse(roi, shape) if _is_oval(roi) else _pixels(*(a[begin:end] for a in spans[1:]))] = index
    return labels


def _pixels(row: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    length = stop - start
    return np.repeat(row, length), np.repeat(start - np.cumsum(length) + length, length) + np.arange(length.sum())


def _ellipse(roi: ImagejRoi, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    cy, cx = (roi.top + roi.bottom) / 2 - 0.5, (roi.left + roi.right) / 2 - 0.5
    return ellipse(cy, cx, _height(roi) / 2, _width(roi) / 2, shape=shape)


def is_roi_file(path: Path) -> bool:
    return path.suffix.lower() in ROI_SUFFIXES
