"""From an NC mask to particles: split touching NCs, measure each in nm.

Touching or bridged NCs are separated with a distance-transform watershed (one seed per NC core, seeds
closer than `min_distance_nm` merged). A cube lying on a face projects to a square, so the edge length is
estimated as sqrt(area).

Shape and contrast per particle, for reading a halide exchange off the table: Feret diameters on the pixels' outer
corners (as ImageJ measures a traced ROI, so a square of n px has Feret max n*sqrt(2) and min n, and Feret min
agrees with sqrt(area) for a cube on its face), the aspect ratio of the equivalent ellipse (ImageJ's "AR": 1 for a
square; ~2 for two NCs merged side by side), solidity (area / convex area: a pair merged off-line dips below ~0.9),
mean and integrated raw HAADF intensity (no background subtracted: the carbon support adds to both), and the
edge-to-edge gap to the nearest other particle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max
from skimage.measure import label
from skimage.segmentation import watershed

from ncseg.config import ParticleParams

PIXEL_SQUARE_VARIANCE = 1 / 12  # second moment of a unit pixel about its centre: pixels are squares, not points


@dataclass(frozen=True)
class Particle:
    label: int
    area_px: int
    area_nm2: float | None
    equivalent_diameter_nm: float | None
    edge_length_nm: float | None
    centroid_x_nm: float | None
    centroid_y_nm: float | None
    centroid_x_px: float
    centroid_y_px: float
    bbox_min_row: int
    bbox_min_col: int
    bbox_max_row: int
    bbox_max_col: int
    touches_border: bool
    feret_max_nm: float | None
    feret_min_nm: float | None
    aspect_ratio: float
    solidity: float
    intensity_mean: float | None  # raw image values (the detector's counts), None without an image
    intensity_integrated: float | None  # their sum over the particle: the Z-contrast readout
    nn_gap_nm: float | None  # edge to edge; None when the particle has no neighbour in the field

    def row(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def split(mask: np.ndarray, pixel_size_nm: float | None, p: ParticleParams) -> np.ndarray:
    """Label image with touching NCs separated; specks under `min_area_nm2` dropped."""
    px = pixel_size_nm or 1.0
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # outside the field is background
    regions = label(mask, connectivity=1)
    peaks = peak_local_max(
        distance, min_distance=max(1, round(p.min_distance_nm / px)), labels=regions, exclude_border=False
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    min_px = p.min_area_nm2 / px**2
    sizes = np.bincount(labels.ravel())
    labels[(sizes < min_px)[labels] & (labels > 0)] = 0
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    kept = np.unique(labels[labels > 0])
    lookup = np.zeros(labels.max() + 1, np.int32)
    lookup[kept] = np.arange(1, len(kept) + 1)
    return lookup[labels]


def measure(labels: np.ndarray, pixel_size_nm: float | None, image: np.ndarray | None = None) -> list[Particle]:
    """One row per label; sizes in nm when calibrated, intensities from `image` (the raw micrograph) when given.

    All labels are measured at once, from pixel sums and from each label's first and last pixel per row (which span
    its convex hull), with the numbers skimage's regionprops gives; regionprops worked label by label, building
    each one's convex image and moments, and was most of `ncseg predict`'s time on a large image."""
    px = pixel_size_nm
    h, w = labels.shape
    fg = np.flatnonzero(labels)
    if not len(fg):
        return []
    own = labels.ravel()[fg].astype(np.intp)
    ids = np.flatnonzero(np.bincount(own))
    index = np.zeros(ids[-1] + 1, np.intp)
    index[ids] = np.arange(len(ids))
    own = index[own]  # 0..n-1: the particle each foreground pixel belongs to
    row, col = np.divmod(fg, w)
    area = np.bincount(own, minlength=len(ids))
    y, x = np.bincount(own, row) / area, np.bincount(own, col) / area  # exact sums: the mean regionprops gives
    ratio = aspect_ratios(own, row - y[own], col - x[own], area)
    if image is not None:
        mean = np.bincount(own, image.ravel()[fg].astype(np.float64), len(ids)) / area
    group, rows, first, last = _row_ends(labels, index)
    top, bottom = _group_ends(group)
    y0, y1 = rows[top], rows[bottom] + 1
    x0, x1 = np.minimum.reduceat(first, top), np.maximum.reduceat(last, top) + 1
    corners, midpoints = ((-1, 1), (1, 1)), ((-1, 0), (0, 1), (1, 0))  # (down, out) from an end pixel, in half px
    feret_max, feret_min = feret_diameters(*_hull(group, rows, first, last, corners))
    solidity = area / convex_areas(*_hull(group, rows, first, last, midpoints), y0, y1)
    gaps = nearest_gaps_px(labels)
    particles = []
    for i, k in enumerate(ids.tolist()):
        area_nm2 = np.float64(area[i]) * px**2 if px else None  # numpy floats, as regionprops' were: row() rounds
        gap = gaps.get(k)
        particles.append(
            Particle(
                label=k,
                area_px=int(area[i]),
                area_nm2=area_nm2,
                equivalent_diameter_nm=float(np.sqrt(4 * area_nm2 / np.pi)) if px else None,
                edge_length_nm=float(np.sqrt(area_nm2)) if px else None,
                centroid_x_nm=x[i] * px if px else None,
                centroid_y_nm=y[i] * px if px else None,
                centroid_x_px=float(x[i]),
                centroid_y_px=float(y[i]),
                bbox_min_row=int(y0[i]),
                bbox_min_col=int(x0[i]),
                bbox_max_row=int(y1[i]),
                bbox_max_col=int(x1[i]),
                touches_border=bool(y0[i] == 0 or x0[i] == 0 or y1[i] == h or x1[i] == w),
                feret_max_nm=float(feret_max[i]) * px if px else None,
                feret_min_nm=float(feret_min[i]) * px if px else None,
                aspect_ratio=float(ratio[i]),
                solidity=float(solidity[i]),
                intensity_mean=float(mean[i]) if image is not None else None,
                intensity_integrated=float(mean[i] * area[i]) if image is not None else None,
                nn_gap_nm=gap * px if px and gap is not None else None,
            )
        )
    return particles


def aspect_ratios(own: np.ndarray, dy: np.ndarray, dx: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Per particle, major over minor axis of the ellipse with its second moments (`dy`, `dx`: each pixel's offset
    from its particle's centroid), the pixels counted as unit squares: exactly a/b for an a x b px rectangle, and
    finite for a one-pixel-wide line (skimage counts pixel centres). The inertia tensor and its eigenvalues are
    formed as skimage's inertia_tensor_eigvals forms them."""
    mu_yy, mu_xx, mu_yx = (np.bincount(own, v, len(area)) for v in (dy * dy, dx * dx, dy * dx))
    both = mu_yy + mu_xx
    tensor = np.stack([both - mu_yy, -mu_yx, -mu_yx, both - mu_xx], axis=-1).reshape(-1, 2, 2) / area[:, None, None]
    minor, major = np.linalg.eigvalsh(tensor).clip(0, None).T
    return np.sqrt((major + PIXEL_SQUARE_VARIANCE) / (minor + PIXEL_SQUARE_VARIANCE))


def _row_ends(labels: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(particle, row, first column, last column) of every row that holds a particle's pixels, sorted by particle
    then row (`index`: a label's particle), from the runs of equal labels along the rows."""
    h = labels.shape[0]
    padded = np.pad(labels, ((0, 0), (1, 1)))
    r, c = np.nonzero(padded[:, 1:] != padded[:, :-1])  # a run of padded[r, c + 1] starts at column c ...
    starts, ends = padded[r, c + 1] != 0, padded[r, c] != 0  # ... and one of padded[r, c] ends at c - 1
    group, rows, first, last = index[padded[r, c + 1][starts]], r[starts], c[starts], c[ends] - 1
    key = group * h + rows
    order = np.argsort(key, kind="stable")  # a row's runs stay left to right
    key = key[order]
    new = np.r_[True, key[1:] != key[:-1]]
    lasts = np.r_[new[1:], True]
    return group[order][new], rows[order][new], first[order][new], last[order][lasts]


def _group_ends(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal values in sorted `group` starts and ends (its last index)."""
    top = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return top, np.r_[top[1:], len(group)] - 1


def _ragged_arange(sizes: np.ndarray) -> np.ndarray:
    """0..size-1 for each size, concatenated."""
    return np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)


Chain = tuple[np.ndarray, np.ndarray, np.ndarray]  # (particle, y, x) of hull vertices, sorted by particle then y


def _hull(
    group: np.ndarray, rows: np.ndarray, first: np.ndarray, last: np.ndarray, offsets: tuple[tuple[int, int], ...]
) -> tuple[Chain, Chain]:
    """Each particle's convex hull of the points at `offsets` (down, and outward from the row, in half px) from the
    centres of its rows' first and last pixels, in half px (integers, so all that follows is exact): its left and
    right chains. Found by peeling every chain at once, without a Qhull call per particle: a point that does not
    turn its chain outward is not a hull vertex, and dropping it can only turn another point's inward, never a
    vertex's."""
    chains = []
    for side in (-1, 1):
        ends = first if side < 0 else last
        g = np.repeat(group, len(offsets))
        y = (2 * rows[:, None] + [dy for dy, _ in offsets]).ravel()
        x = (2 * ends[:, None] + [side * out for _, out in offsets]).ravel()
        order = np.lexsort((-side * x, y, g))  # per particle and y, the outermost point first
        g, y, x = g[order], y[order], x[order]
        keep = np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (y[1:] != y[:-1])])
        while True:
            gk, yk, xk = g[keep], y[keep], x[keep]
            inner = (gk[:-2] == gk[1:-1]) & (gk[2:] == gk[1:-1])
            turn = (yk[1:-1] - yk[:-2]) * (xk[2:] - xk[:-2]) - (xk[1:-1] - xk[:-2]) * (yk[2:] - yk[:-2])
            drop = inner & (side * turn >= 0)
            if not drop.any():
                break
            keep = keep[~np.r_[False, drop, False]]
        chains.append((g[keep], y[keep], x[keep]))
    return chains[0], chains[1]


def feret_diameters(left: Chain, right: Chain) -> tuple[np.ndarray, np.ndarray]:
    """Per particle, (max, min) caliper widths in px of the pixels' outer corners, from the `_hull` of the corners.
    Max: the longest distance between hull vertices; min: the narrowest extent perpendicular to a hull edge (rotating
    calipers: the narrowest width of a convex polygon lies flush with one of its edges). skimage's
    feret_diameter_max outlines pixel centres' half-way points instead and gives sqrt(n^2 + (n-1)^2) for an n px
    square, 5 % short at 10 px: the size of the lattice change a halide exchange makes."""
    g, y, x = (np.concatenate([a, b]) for a, b in zip(left, right, strict=True))
    order = np.lexsort((np.r_[left[1], -right[1]], np.repeat([0, 1], [len(left[0]), len(right[0])]), g))
    g, y, x = g[order], y[order], x[order]  # round each hull: down the left chain, up the right
    top, bottom = _group_ends(g)
    size = bottom - top + 1
    following = np.arange(len(g)) + 1
    following[bottom] = top
    ey, ex = y[following] - y, x[following] - x
    n = size[g]  # each vertex paired with every vertex of its hull
    i, j = np.repeat(np.arange(len(g)), n), np.repeat(top[g], n) + _ragged_arange(n)
    spans = np.abs(ey[i] * (x[j] - x[i]) - ex[i] * (y[j] - y[i]))  # edge length times distance from the edge
    per_edge = np.cumsum(n) - n
    width = np.minimum.reduceat(np.maximum.reduceat(spans, per_edge) / np.hypot(ey, ex), top)
    longest = np.maximum.reduceat((y[i] - y[j]) ** 2 + (x[i] - x[j]) ** 2, per_edge[top])
    return np.sqrt(longest) / 2, width / 2


def convex_areas(left: Chain, right: Chain, y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
    """Per particle, the pixels of its convex image as skimage's convex_hull_image counts them (regionprops'
    area_convex): the pixel centres inside or on the convex hull of the pixel-edge midpoints (the `_hull` of the
    midpoints; `y0`, `y1`: the particles' first and one-past-last rows). Counted row by row from where the row
    crosses the hull's left and right chains, in integer arithmetic: exact, as skimage's point-in-polygon test is on
    these half-integer vertices."""
    height = y1 - y0
    g = np.repeat(np.arange(len(y0)), height)
    y = 2 * (np.repeat(y0, height) + _ragged_arange(height))  # every row of each box, in half px
    stride = 2 * int(y1.max()) + 2
    columns = []
    for gc, yc, xc in (left, right):
        a = np.searchsorted(gc * stride + yc, g * stride + y, side="right") - 1  # the chain edge a..a+1 at y
        rise = yc[a + 1] - yc[a]
        columns.append((xc[a] * rise + (xc[a + 1] - xc[a]) * (y - yc[a]), 2 * rise))  # x = num / den, in px
    (num_l, den_l), (num_r, den_r) = columns
    leftmost, rightmost = -(-num_l // den_l), num_r // den_r  # ceil, floor
    count = rightmost - leftmost + 1
    return np.bincount(g, np.maximum(count, 0), len(y0))


def inner_boundary(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels with a differently labelled 4-neighbour (background included; the field's edge is not one):
    skimage's find_boundaries(mode="inner") by four comparisons instead of a grey dilation and erosion."""
    edge = np.zeros(labels.shape, bool)
    down, right = labels[1:] != labels[:-1], labels[:, 1:] != labels[:, :-1]
    edge[1:] |= down
    edge[:-1] |= down
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    return edge & (labels > 0)


def nearest_gaps_px(labels: np.ndarray) -> dict[int, float]:
    """Per label, the edge-to-edge gap in px to the nearest other label: the shortest distance between the two
    particles' boundary pixel centres, less one pixel (half a pixel on each side), so touching particles have gap 0
    and a one-pixel background line between two squares is a gap of 1. Exact, searching the other particles'
    boundary pixels in a window around the particle's box, widened until the nearest one found lies within the
    window's reach (every pixel that near the particle is in the window). A k-d tree of all boundary pixels had to
    wade through each particle's own boundary before it reached another's, most of `measure`'s time."""
    boundary = inner_boundary(labels)
    if len(np.unique(labels[boundary])) < 2:
        return {}
    h, w = labels.shape
    gaps = {}
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        own = np.argwhere(boundary[box] & (labels[box] == k)) + _origin(box)
        if not len(own):
            continue
        reach = 8
        while True:
            window = tuple(slice(max(0, s.start - reach), s.stop + reach) for s in box)
            others = np.argwhere(boundary[window] & (labels[window] != k)) + _origin(window)
            whole = window[0].start == 0 and window[1].start == 0 and window[0].stop >= h and window[1].stop >= w
            if len(others):
                nearest = _shortest_distance(own, others)
                if nearest <= reach or whole:
                    gaps[k] = nearest - 1.0
                    break
                reach = int(np.ceil(nearest))
            else:
                reach *= 4
    return gaps


def _origin(box: tuple[slice, ...]) -> np.ndarray:
    return np.array([s.start for s in box])


def _shortest_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Between two sets of integer points: over all pairs when that is small, else by a k-d tree."""
    if len(a) * len(b) > 1 << 20:
        return float(cKDTree(b).query(a)[0].min())
    return float(np.sqrt(((a[:, None, :] - b[None]) ** 2).sum(axis=-1).min()))
