"""The ImageJ/Fiji round trip: particles out as a RoiSet, corrected RoiSets back in as masks.

Each particle becomes one traced polygon along its pixels' outer edges (ImageJ's own "Traced" ROI type, what the
wand tool makes), named by its label. ImageJ fills a polygon by taking every pixel whose centre lies inside, so an
outline on pixel edges fills back to exactly the particle's pixels, and two touching particles share an edge: no
merge, no new gap (the 1-2 px losses of tools that outline through pixel centres do not happen). RoiSets read back
are rasterised by the same centre rule. Only area ROIs make a mask: a RoiSet holding a line, point or text ROI is
refused with the ROI named, since it is more likely a slip in the ROI Manager than a particle.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from roifile import ROI_SUBTYPE, ROI_TYPE, ImagejRoi, roiread, roiwrite
from skimage.draw import ellipse, polygon

from ncseg.io.atomic import atomic_path
from ncseg.io.images import ImageError

POLYGONS = {ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED}
AREAS = POLYGONS | {ROI_TYPE.RECT, ROI_TYPE.OVAL}
NOT_AREAS = {ROI_SUBTYPE.TEXT, ROI_SUBTYPE.ARROW, ROI_SUBTYPE.IMAGE}  # drawn as rectangles or lines, not areas
ROI_SUFFIXES = {".zip", ".roi"}

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


def labels_to_rois(labels: np.ndarray) -> list[ImagejRoi]:
    """One traced ROI per label, named by the label (the `label` column of the particle table)."""
    rois = []
    for label in np.unique(labels[labels > 0]).tolist():
        roi = ImagejRoi.frompoints(outline(labels == label).astype(np.float32), name=str(label))
        roi.roitype = ROI_TYPE.TRACED
        rois.append(roi)
    return rois


def write_roiset(path: Path, labels: np.ndarray) -> int:
    """An ImageJ RoiSet .zip (opens in Fiji's ROI Manager over the image); returns how many ROIs it holds."""
    rois = labels_to_rois(labels)
    with atomic_path(path) as tmp:
        tmp.unlink()  # roifile appends to an existing zip
        if rois:
            roiwrite(tmp, rois)
        else:
            tmp.write_bytes(_EMPTY_ZIP)
    return len(rois)


_EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18  # a zip archive with no members: an image without particles


def read_rois(path: Path) -> list[ImagejRoi]:
    """The area ROIs of a RoiSet .zip or a single .roi file, or an ImageError naming what cannot be a mask."""
    try:
        rois = [] if _is_empty_zip(path) else roiread(path)
    except Exception as err:  # roifile raises several types for files that are not ROIs
        raise ImageError(path, f"not an ImageJ ROI file or RoiSet ({err})") from err
    rois = rois if isinstance(rois, list) else [rois]
    other = [_describe(roi, index) for index, roi in enumerate(rois, 1) if not _encloses_area(roi)]
    if other:
        raise ImageError(
            path,
            f"ROIs that enclose no area cannot be a mask: {', '.join(other)}; delete them in Fiji's ROI Manager "
            "(or draw them as polygons) and save the RoiSet again",
        )
    return rois


def _is_empty_zip(path: Path) -> bool:
    """A zip archive without members (what write_roiset writes for an image without particles); a short file
    that is not one is for roiread to refuse."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return not archive.namelist()


def _encloses_area(roi: ImagejRoi) -> bool:
    return roi.composite or (roi.roitype in AREAS and roi.subtype not in NOT_AREAS)


def _describe(roi: ImagejRoi, index: int) -> str:
    kind = ROI_SUBTYPE(roi.subtype) if roi.subtype in NOT_AREAS else ROI_TYPE(roi.roitype)
    return f"{roi.name or f'#{index}'} ({kind.name.lower()})"


def _fill(roi: ImagejRoi, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The pixels ImageJ counts as inside: those whose centre (x + 0.5, y + 0.5) lies inside the shape."""
    if roi.composite:  # shapes with holes (ImageJ's "Create Selection" of a mask): even-odd over their paths
        inside = np.zeros(shape, bool)
        for path in roi.coordinates(multi=True):
            inside[polygon(path[:, 1] - 0.5, path[:, 0] - 0.5, shape=shape)] ^= True
        return np.nonzero(inside)
    if roi.roitype == ROI_TYPE.OVAL:
        cy, cx = (roi.top + roi.bottom) / 2 - 0.5, (roi.left + roi.right) / 2 - 0.5
        return ellipse(cy, cx, (roi.bottom - roi.top) / 2, (roi.right - roi.left) / 2, shape=shape)
    if roi.roitype == ROI_TYPE.RECT:
        xy = np.array([[roi.left, roi.top], [roi.right, roi.top], [roi.right, roi.bottom], [roi.left, roi.bottom]])
    else:
        xy = np.asarray(roi.coordinates(), dtype=np.float64)
    return polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=shape)


def rois_to_labels(rois: list[ImagejRoi], shape: tuple[int, int]) -> np.ndarray:
    """A uint16 label image, ROI k (in file order) filled with k; where ROIs overlap the later one wins."""
    labels = np.zeros(shape, np.uint16)
    for index, roi in enumerate(rois, 1):
        labels[_fill(roi, shape)] = index
    return labels


def is_roi_file(path: Path) -> bool:
    return path.suffix.lower() in ROI_SUFFIXES
