"""How far the expert's labels agree with themselves: each pair of near-copy images (neighbouring tomogram slices,
the pairs the leak detector joins) scored mask against mask, for the expert's class maps, the CV networks'
out-of-fold class maps and the classical levels baseline's — a noisy reference for what the labels can confirm.

    python -m benchmarks.label_consistency -p PARAMS [-S ...] --model MODEL_DIR [--out FILE]

Two neighbouring slices of a tomogram (aligned, their pixels correlate at 0.9-0.99) show nearly the same specimen,
so a fixed function of the image (a network, an intensity cut) draws nearly the same classes on both; what the
expert drew on them differs by the slices' real change *plus* the annotator's own variation. Where a fixed function
agrees between the two slices better than the expert does, the difference is the labelling (or a function blind to
the real change). The expert's mask of one slice scored against the other's is not a ceiling: a predictor of the
expert's average outline can beat any one drawing, and the neighbour's mask carries the real change too. It says
how closely these labels match themselves one slice away, and a goal above it asks for more.

Pairs: the images whose similarity (ncseg.data.leaks, 8 turns and ±10 % shifts of a 64 px signature) reaches
`cv.leak_threshold`. Each pair is aligned at full resolution first (the dihedral turn and integer shift with the
highest cross-correlation), then every map is compared on the overlap. Per class: the Jaccard between the two
slices' expert maps, between the networks' (each image through its own fold's network; a pair shares a group,
hence a fold and a network) and between the levels baseline's (fitted on that fold's training side, as CV fits
it); pooled (intersections and unions summed over the pairs) and as a mean over the pairs that hold the class.
For reference, the network against the expert on the distinct images of the pairs, each once, the same two ways.
A last table says where the networks and the expert disagree over all images: the share of the disagreeing pixels
within 1 and 2 px (city-block) of the expert's outline, the image's frame not counted as outline, and the ratio of
the areas (a net size bias a threshold could fix).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.registration import phase_cross_correlation

from benchmarks.common import cpu_model, k_class_out_of_fold, k_class_parser, write_report
from ncseg.config import ClassicalParams, Params
from ncseg.data.dataset import Sample
from ncseg.data.leaks import Pair, near_duplicates, signatures, similarity
from ncseg.training.cv import classical_predictions
from ncseg.training.plan import Split

MAPS = ("expert", "network", "levels")  # the class maps compared between the slices of a pair
OUTLINE_PX = (1, 2)  # bands around the expert's outline where a disagreement counts as a misplaced outline
Counts = dict[int, tuple[int, int]]  # per class id (0: the foreground as one mask): (intersection, union)


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
        """`x` in this alignment's orientation (a class map turns with its image)."""
        return np.rot90(x.T if self.flip else x, self.k)

    def overlap(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The parts of `a` and of turned `b` that show the same place (empty if the shift leaves none)."""
        b = self.turn(b)
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        ya, yb = max(self.dy, 0), max(-self.dy, 0)
        xa, xb = max(self.dx, 0), max(-self.dx, 0)
        hh, ww = max(h - abs(self.dy), 0), max(w - abs(self.dx), 0)
        return a[ya : ya + hh, xa : xa + ww], b[yb : yb + hh, xb : xb + ww]


SAME_PLACE = Alignment(False, 0, 0, 0, 1.0)


def align(a: np.ndarray, b: np.ndarray) -> Alignment:
    """The dihedral turn and integer shift of `b` that best matches `a`: the cross-correlation peak per turn, and
    the turn whose overlap correlates best."""
    reference = a.astype(np.float64)
    best = None
    for flip in (False, True):
        for k in range(4):
            turned = Alignment(flip, k, 0, 0, 0.0).turn(b).astype(np.float64)
            if turned.shape != a.shape:
                continue
            (dy, dx), _, _ = phase_cross_correlation(reference, turned, normalization=None)
            candidate = Alignment(flip, k, int(dy), int(dx), -1.0)
            pa, pb = candidate.overlap(a, b)
            r = np.nan_to_num(np.corrcoef(pa.ravel(), pb.ravel())[0, 1], nan=-1.0) if pa.size > 1 else -1.0
            if best is None or r > best.r:
                best = replace(candidate, r=float(r))
    if best is None:
        raise ValueError(f"no dihedral turn of a {b.shape} image matches a {a.shape} one")
    return best


def pair_counts(a: np.ndarray, b: np.ndarray, at: Alignment, ids: tuple[int, ...]) -> Counts:
    """Per class id: (intersection, union) of two class maps on the overlap of their images; 0 is the foreground
    as one mask (every id but the background)."""
    pa, pb = at.overlap(a, b)
    out = {0: _counts(pa > 0, pb > 0)}
    out.update({c: _counts(pa == c, pb == c) for c in ids})
    return out


def _counts(x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    return int(np.count_nonzero(x & y)), int(np.count_nonzero(x | y))


def summary(counts: list[Counts]) -> dict[int, tuple[float, float]]:
    """Per class: the pooled Jaccard (intersections and unions summed) and the mean Jaccard over the entries that
    hold the class in either map (nan where none does)."""
    out = {}
    for c in counts[0] if counts else ():
        held = [(i, u) for i, u in (n[c] for n in counts) if u]
        pooled = sum(i for i, _ in held) / sum(u for _, u in held) if held else float("nan")
        out[c] = (pooled, float(np.mean([i / u for i, u in held])) if held else float("nan"))
    return out


def error_places(pred: np.ndarray, truth: np.ndarray) -> Counter[str]:
    """Pixel counts of where a predicted mask and the expert's disagree: its extra and missed pixels, and how many
    of each lie within 1 and 2 px of the expert's outline (a misplaced outline) rather than farther (a region or a
    particle decided otherwise, or an outline moved further), beside both areas (a net size bias). The image's
    frame is not an outline: a region running off the image has no border there."""
    out = Counter(predicted=int(np.count_nonzero(pred)), expert=int(np.count_nonzero(truth)))
    bands = {
        px: ndi.binary_dilation(truth, iterations=px) & ~ndi.binary_erosion(truth, iterations=px, border_value=1)
        for px in OUTLINE_PX
    }
    for kind, wrong in (("extra", pred & ~truth), ("missed", truth & ~pred)):
        out[kind] = int(np.count_nonzero(wrong))
        for px, band in bands.items():
            out[f"{kind} within {px} px"] = int(np.count_nonzero(wrong & band))
    return out


def levels_maps(params: Params, samples: list[Sample], split: Split) -> dict[int, np.ndarray]:
    """The levels baseline's class map of every image, fitted on its fold's training side as CV fits it."""
    spec = params.model("classical-levels")
    if not isinstance(spec, ClassicalParams):
        raise ValueError("classical-levels: not a classical model in this study's params")
    out: dict[int, np.ndarray] = {}
    for k in range(params.cv.n_folds):
        out |= classical_predictions(samples, split.test(k), spec, params.labels)
    return out


def _cell(score: tuple[float, float]) -> str:
    return " / ".join("—" if np.isnan(v) else f"{v:.3f}" for v in score)


def pair_table(
    samples: list[Sample], maps: dict[str, dict[int, np.ndarray]], pairs: list[Pair], keys: list[int]
) -> list[str]:
    """Per pair, each map's Jaccard per class between the two slices; then pooled / mean over the pairs."""
    ids = tuple(keys[1:])
    per_map: dict[str, list[Counts]] = {m: [] for m in MAPS}
    rows = []
    for p in pairs:
        at = align(samples[p.a].raw, samples[p.b].raw)
        counts = {m: pair_counts(maps[m][p.a], maps[m][p.b], at, ids) for m in MAPS}
        for m in MAPS:
            per_map[m].append(counts[m])
        shift = f"{at.dy:+d}, {at.dx:+d}{' turned' if at.k or at.flip else ''}"
        cells = " | ".join(_cell(summary([counts[m]])[c][:1]) for c in keys for m in MAPS)
        rows.append(
            f"| {samples[p.a].name} · {samples[p.b].name} | {p.similarity:.3f} | {at.r:.3f} | {shift} | {cells} |"
        )
    scores = {m: summary(per_map[m]) for m in MAPS}
    total = " | ".join(f"**{_cell(scores[m][c])}**" for c in keys for m in MAPS)
    return [*rows, f"| **pooled / mean over pairs** | | | | {total} |"]


def place_rows(maps: dict[str, dict[int, np.ndarray]], keys: list[int], names: dict[int, str]) -> list[str]:
    """Per class, over every image: the network's area over the expert's, and the share of its extra and missed
    pixels within 1 and 2 px of the expert's outline."""
    bands = [(kind, px) for kind in ("extra", "missed") for px in OUTLINE_PX]
    lines = [
        "| class | network / expert area | " + " | ".join(f"{k} within {px} px" for k, px in bands) + " |",
        "|---|---|" + "---|" * len(bands),
    ]
    for c in keys:
        totals: Counter[str] = Counter()
        for i, net in maps["network"].items():
            truth = maps["expert"][i]
            totals += error_places(*((net > 0, truth > 0) if c == 0 else (net == c, truth == c)))
        shares = " | ".join(f"{totals[f'{k} within {px} px'] / max(totals[k], 1):.2f}" for k, px in bands)
        lines.append(f"| {names[c]} | {totals['predicted'] / max(totals['expert'], 1):.3f} | {shares} |")
    return lines


def main() -> None:
    from ncseg.config import load_params

    parser = k_class_parser(__doc__.splitlines()[0], "label_consistency.md")
    args = parser.parse_args()
    params = load_params(args.params, args.overrides)
    samples, split, probs = k_class_out_of_fold(params, args.model)
    maps = {
        "expert": {i: s.classes for i, s in enumerate(samples)},
        "network": {i: p.argmax(0) for i, p in probs.items()},
        "levels": levels_maps(params, samples, split),
    }
    pairs = near_duplicates(similarity(signatures([s.raw for s in samples])), params.cv.leak_threshold, among=True)
    ids = params.labels.foreground
    keys, names = [0, *ids], {0: "material", **{c: params.labels.names[c] for c in ids}}
    in_pairs = sorted({i for p in pairs for i in (p.a, p.b)})
    vs = summary([pair_counts(maps["network"][i], maps["expert"][i], SAME_PLACE, ids) for i in in_pairs])
    how = (
        f"Command: `python -m benchmarks.label_consistency -p {args.params} "
        + "".join(f"-S '{o}' " for o in args.overrides)
        + f"--model {args.model}`, on {cpu_model()}. {len(pairs)} near-copy pairs of {len(samples)} images "
        f"(similarity ≥ {params.cv.leak_threshold}), aligned; each column the Jaccard of one class between the two "
        "images' maps on their overlap: the expert's, the networks' (repeat 0, out of fold), the levels baseline's "
        "(fitted per fold on the training side). Last row: pooled (intersections and unions summed over the pairs) "
        "/ mean over the pairs that hold the class."
    )
    lines = [
        "| pair | similarity | r aligned | shift (px) | "
        + " | ".join(f"{names[c]}: {m}" for c in keys for m in MAPS)
        + " |",
        "|---|---|---|---|" + "---|" * len(keys) * len(MAPS),
        *pair_table(samples, maps, pairs, keys),
        "",
        f"The network against the expert on the {len(in_pairs)} distinct images of the pairs (pooled / mean over the "
        "images that hold the class): " + "; ".join(f"{names[c]} {_cell(vs[c])}" for c in keys) + ".",
        "",
        f"Where the networks and the expert disagree, over all {len(probs)} images (out of fold): shares of the extra "
        "and the missed pixels near the expert's outline.",
        "",
        *place_rows(maps, keys, names),
    ]
    write_report(args.out, "How far the expert's labels agree with themselves on near-copy images", how, lines)


if __name__ == "__main__":
    main()
