"""How far the expert's labels agree with themselves: each pair of near-copy images (neighbouring tomogram slices,
the pairs the leak detector joins) scored mask against mask, for the expert's class maps, the CV networks'
out-of-fold class maps and the classical levels baseline's — a ceiling the labels put on any score.

    python -m benchmarks.label_consistency -p PARAMS [-S ...] --model MODEL_DIR [--out FILE]

Two neighbouring slices of a tomogram (aligned, their pixels correlate at 0.9-0.99) show nearly the same specimen,
so a fixed function of the image (a network, an intensity cut) draws nearly the same classes on both; what the
expert drew on them differs by the slices' real change *plus* the annotator's own variation. Where the fixed
functions agree between the two slices better than the expert does, the difference is the labelling. The expert's
mask of one slice scored against the other's is also what an expert-level predictor of that image would score:
a goal above it asks a network to match the labels more closely than they match themselves.

Pairs: the images whose similarity (ncseg.data.leaks, 8 turns and ±10 % shifts of a 64 px signature) reaches
`cv.leak_threshold`. Each pair is aligned at full resolution first (the dihedral turn and integer shift with the
highest phase correlation), then every map is compared on the overlap. Per class: the Jaccard between the two
slices' expert maps, between the networks' (each image through its own fold's network; a pair shares a group,
hence a fold and a network) and between the levels baseline's (fitted on that fold's training side), and for
reference the network's Jaccard against the expert on the same images (mean of the two). Pooled: intersections
and unions summed over pairs (a pair without the class in either map adds nothing). A second table says where the
networks and the expert disagree over all images: the share of the disagreeing pixels near the expert's outline
(where a second drawing would move it) and the ratio of the areas (a size bias a threshold could fix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.registration import phase_cross_correlation

from benchmarks.common import cpu_model, k_class_out_of_fold, k_class_parser, write_report
from ncseg.config import Params
from ncseg.data.dataset import Sample
from ncseg.data.leaks import Pair, near_duplicates, signatures, similarity
from ncseg.models import classical
from ncseg.training.plan import Split

MAPS = ("expert", "network", "levels")  # the class maps compared between the slices of a pair
COMPARED = (*MAPS, "network vs expert")  # and, per image, the network against the expert
OUTLINE_PX = (1, 2)  # bands around the expert's outline where a disagreement counts as a misplaced outline


@dataclass(frozen=True)
class Alignment:
    """Where image b lies on image a: b turned (k quarter turns, transposed first if `flip`), then moved by
    (dy, dx) pixels; r is the images' correlation on their overlap."""

    flip: bool
    k: int
    dy: int
    dx: int
    r: float

    def turn(self, x: np.ndarray) -> np.ndarray:
        return np.rot90(x.T if self.flip else x, self.k)

    def overlap(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The parts of `a` and of turned `b` that show the same place."""
        b = self.turn(b)
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        ya, yb = max(self.dy, 0), max(-self.dy, 0)
        xa, xb = max(self.dx, 0), max(-self.dx, 0)
        hh, ww = h - abs(self.dy), w - abs(self.dx)
        return a[ya : ya + hh, xa : xa + ww], b[yb : yb + hh, xb : xb + ww]


def align(a: np.ndarray, b: np.ndarray) -> Alignment:
    """The dihedral turn and integer shift of `b` that best matches `a` (phase correlation per turn, the turn with
    the highest correlation on the overlap wins)."""
    best = None
    for flip in (False, True):
        for k in range(4):
            turned = Alignment(flip, k, 0, 0, 0.0).turn(b).astype(np.float64)
            if turned.shape != a.shape:
                continue
            (dy, dx), _, _ = phase_cross_correlation(a.astype(np.float64), turned, normalization=None)
            cand = Alignment(flip, k, int(dy), int(dx), 0.0)
            pa, pb = cand.overlap(a, b)
            r = float(np.corrcoef(pa.ravel(), pb.ravel())[0, 1]) if pa.size > 1 else -1.0
            if best is None or r > best.r:
                best = Alignment(flip, k, int(dy), int(dx), r)
    if best is None:
        raise ValueError(f"no dihedral turn of a {b.shape} image matches a {a.shape} one")
    return best


def pair_counts(a: np.ndarray, b: np.ndarray, at: Alignment, ids: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Per class id: (intersection, union) of two class maps on the overlap of their images; 0 is the foreground
    as one mask (every id but the background)."""
    pa, pb = at.overlap(a, b)
    out = {0: _counts(pa > 0, pb > 0)}
    out.update({c: _counts(pa == c, pb == c) for c in ids})
    return out


def _counts(x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    return int(np.count_nonzero(x & y)), int(np.count_nonzero(x | y))


def levels_maps(params: Params, samples: list[Sample], split: Split) -> dict[int, np.ndarray]:
    """The levels baseline's class map of every image, fitted on its fold's training side as CV fits it."""
    spec = params.model("classical-levels")
    out = {}
    for k in range(params.cv.n_folds):
        test = set(split.test(k))
        train = [s for j, s in enumerate(samples) if j not in test]
        levels = classical.fit_levels(
            [s.raw for s in train],
            [s.classes for s in train],
            [s.pixel_size_nm for s in train],
            spec,
            len(params.labels.classes),
        )
        out.update({i: classical.segment_levels(samples[i].raw, samples[i].pixel_size_nm, spec, levels) for i in test})
    return out


def error_places(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Pixel counts of where a predicted mask and the expert's disagree: its extra and missed pixels, and how many
    of each lie within 1 and 2 px of the expert's outline (a misplaced outline) rather than farther (a region or a
    particle decided otherwise), beside both areas (a size bias)."""
    out = {"predicted": int(np.count_nonzero(pred)), "expert": int(np.count_nonzero(truth))}
    for kind, wrong in (("extra", pred & ~truth), ("missed", truth & ~pred)):
        out[kind] = int(np.count_nonzero(wrong))
        for px in OUTLINE_PX:
            band = ndi.binary_dilation(truth, iterations=px) ^ ndi.binary_erosion(truth, iterations=px)
            out[f"{kind} within {px} px"] = int(np.count_nonzero(wrong & band))
    return out


def _cell(inter: int, union: int) -> str:
    return f"{inter / union:.3f}" if union else "—"


def pair_rows(
    samples: list[Sample], maps: dict[str, dict[int, np.ndarray]], pairs: list[Pair], ids: tuple[int, ...]
) -> list[str]:
    """One row per pair (each map's Jaccard per class between the two slices, and the network's against the
    expert on the same images), then the pooled row."""
    keys = [0, *ids]
    pooled = {(m, c): [0, 0] for m in COMPARED for c in keys}
    rows = []
    same = Alignment(False, 0, 0, 0, 1.0)
    for p in pairs:
        at = align(samples[p.a].raw, samples[p.b].raw)
        counts = {m: pair_counts(maps[m][p.a], maps[m][p.b], at, ids) for m in MAPS}
        vs = [pair_counts(maps["network"][i], maps["expert"][i], same, ids) for i in (p.a, p.b)]
        counts["network vs expert"] = {c: (vs[0][c][0] + vs[1][c][0], vs[0][c][1] + vs[1][c][1]) for c in keys}
        for (m, c), acc in pooled.items():
            acc[0] += counts[m][c][0]
            acc[1] += counts[m][c][1]
        rows.append(
            f"| {samples[p.a].name} · {samples[p.b].name} | {p.similarity:.3f} | {at.r:.3f} | "
            f"{at.dy:+d}, {at.dx:+d}{' turned' if at.k or at.flip else ''} | "
            + " | ".join(_cell(*counts[m][c]) for c in keys for m in COMPARED)
            + " |"
        )
    total = " | ".join(f"**{_cell(*pooled[(m, c)])}**" for c in keys for m in COMPARED)
    return [*rows, f"| **pooled** | | | | {total} |"]


def place_rows(maps: dict[str, dict[int, np.ndarray]], ids: tuple[int, ...], names: dict[int, str]) -> list[str]:
    """Per class, over every image: the network's area over the expert's, and the share of its extra and missed
    pixels within 1 and 2 px of the expert's outline."""
    bands = [f"{kind} within {px} px" for kind in ("extra", "missed") for px in OUTLINE_PX]
    lines = [
        "| class | network / expert area | " + " | ".join(f"share of {b}" for b in bands) + " |",
        "|---|---|" + "---|" * len(bands),
    ]
    for c in (0, *ids):
        totals: dict[str, int] = {}
        for i, net in maps["network"].items():
            truth = maps["expert"][i]
            pred, true = (net > 0, truth > 0) if c == 0 else (net == c, truth == c)
            for key, n in error_places(pred, true).items():
                totals[key] = totals.get(key, 0) + n
        shares = [totals[b] / max(totals[b.split()[0]], 1) for b in bands]
        lines.append(
            f"| {names[c]} | {totals['predicted'] / max(totals['expert'], 1):.3f} | "
            + " | ".join(f"{v:.2f}" for v in shares)
            + " |"
        )
    return lines


def main() -> None:
    from ncseg.config import load_params

    parser = k_class_parser(__doc__.splitlines()[0], "label_consistency.md")
    args = parser.parse_args()
    params = load_params(args.params, args.overrides)
    labels = params.labels
    samples, split, probs = k_class_out_of_fold(params, args.model)
    maps = {
        "expert": {i: s.classes for i, s in enumerate(samples)},
        "network": {i: p.argmax(0) for i, p in probs.items()},
        "levels": levels_maps(params, samples, split),
    }
    pairs = near_duplicates(similarity(signatures([s.raw for s in samples])), params.cv.leak_threshold, among=True)
    ids = labels.foreground
    names = {0: "material", **{c: labels.names[c] for c in ids}}
    columns = [f"{names[c]}: {m}" for c in (0, *ids) for m in COMPARED]
    how = (
        f"Command: `python -m benchmarks.label_consistency -p {args.params} "
        + "".join(f"-S '{o}' " for o in args.overrides)
        + f"--model {args.model}`, on {cpu_model()}. {len(pairs)} near-copy pairs of {len(samples)} images "
        f"(similarity ≥ {params.cv.leak_threshold}); each column the Jaccard of one class between the two images' "
        "maps on their aligned overlap: the expert's, the networks' (repeat 0, out of fold), the levels baseline's "
        "(fitted per fold on the training side); 'network vs expert' is the network against the expert on the same "
        "image (both images of the pair pooled). Pooled row: intersections and unions summed over the pairs. "
        f"Second table: the networks against the expert over all {len(probs)} images (out of fold), per class."
    )
    lines = [
        "| pair | similarity | r aligned | shift (px) | " + " | ".join(columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
        *pair_rows(samples, maps, pairs, ids),
        "",
        *place_rows(maps, ids, names),
    ]
    write_report(args.out, "How far the expert's labels agree with themselves on near-copy images", how, lines)


if __name__ == "__main__":
    main()
