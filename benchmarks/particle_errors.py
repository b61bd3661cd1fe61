"""Where a K-class model loses a particle class, out of fold on its own CV networks: the particles it misses, the
ones it invents, or their outlines — beside how far a one-pixel change of outline moves the expert's own mask.

    python -m benchmarks.particle_errors -p PARAMS [-S ...] --model MODEL_DIR [--particles NAME] [--out FILE]

Each test image of repeat 0's split goes through its own fold's network (as `benchmarks.class_decision`); the class
map is the argmax, what CV scores and the model serves. Per image, the particle class's Jaccard is taken as
predicted and then with one kind of error removed: *false* particles (predicted objects overlapping no expert
particle) dropped, or *missed* particles (expert particles no predicted pixel overlaps) added. The outlines alone
are the predicted particles that overlap an expert one against the expert particles they overlap, beside those
expert particles shrunk by one pixel. Averaged per fold, then mean ± std over folds, as CV reports. The last rows
are the whole expert mask against itself grown, shrunk (3 x 3 cross) or moved by one pixel: a score above them
asks for outlines closer to the expert's than a pixel. Objects are connected components (unfiltered);
their contrast is the mean raw intensity above the median of the image's largest foreground region class (the
support), the raw counts the detector wrote. Their *local* contrast is taken against the median of the ring 2-4 px
around each particle instead (no particle pixels, expert or predicted, in it), in counts and in units of the ring's
standard deviation: whether a particle stands out from what surrounds it — what a local-contrast view of the image
would show a network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from benchmarks.common import cpu_model, fold_means, k_class_out_of_fold, k_class_parser
from ncseg.metrics import jaccard

CROSS = ndi.generate_binary_structure(2, 1)
SPECK_PX = (16, 32, 64)  # predicted particles smaller than this dropped: what a minimum-area rule would recover
RING_PX = (1, 4)  # dilations: the ring is within 4 px of a particle but not within 1, i.e. 2-4 px (city-block)


def error_budget(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """One image's Jaccard of a particle class, then with its false particles or its missed ones taken away (how
    much of the gap to 1 each kind of error makes), then with the predicted particles under a few areas dropped (a
    minimum-area rule, the same for every fold: a diagnostic, not an operating point), and the outlines alone: the
    predicted particles that overlap an expert particle against the expert particles they overlap, beside those
    expert particles shrunk by one pixel (what a one-pixel outline error costs particles of their sizes)."""
    found, kept = _overlapping(truth, pred), _overlapping(pred, truth)
    return {
        "as predicted (argmax)": jaccard(pred, truth),
        "without false particles": jaccard(kept, truth),
        "without missed particles": jaccard(pred | (truth & ~found), truth),
        **{f"predicted particles under {a} px dropped": jaccard(_at_least(pred, a), truth) for a in SPECK_PX},
        "outlines of the particles found": jaccard(kept, found),
        "the particles found by the expert's outline shrunk 1 px": jaccard(_shrunk(found), found),
    }


def one_pixel(truth: np.ndarray) -> dict[str, float]:
    """The expert mask against itself with its outline moved by one pixel (the image's edge left as it is)."""
    return {
        "grown 1 px": jaccard(ndi.binary_dilation(truth, CROSS), truth),
        "shrunk 1 px": jaccard(_shrunk(truth), truth),
        "moved 1 px": jaccard(truth[:, 1:], truth[:, :-1]),
    }


@dataclass(frozen=True)
class Outcome:
    """One particle and what the model did with it: the size, contrast and confidence that tell a missed particle
    from a found one."""

    kind: str  # found | missed | false
    area_px: int
    contrast: float  # mean raw intensity above the reference region's median
    peak: float  # the class's highest probability inside it
    local: float  # mean raw intensity above the median of the ring around it (nan: under 2 ring pixels)
    local_snr: float  # `local` in units of the ring's standard deviation


def particles(
    pred: np.ndarray, truth: np.ndarray, prob: np.ndarray, raw: np.ndarray, reference: float
) -> list[Outcome]:
    """Every expert particle (found or missed) and every false one, with its size, contrast (global and local) and
    peak probability."""
    out = []
    for mask, other, kinds in ((truth, pred, ("found", "missed")), (pred, truth, (None, "false"))):
        labelled, n = ndi.label(mask)
        for j in range(1, n + 1):
            obj = labelled == j
            kind = kinds[0] if (obj & other).any() else kinds[1]
            if kind:
                inside = float(raw[obj].mean())
                local, snr = _local_contrast(inside, raw[_ring(obj, truth | pred)])
                out.append(Outcome(kind, int(obj.sum()), inside - reference, float(prob[obj].max()), local, snr))
    return out


def _ring(obj: np.ndarray, particles: np.ndarray) -> np.ndarray:
    """The pixels 2-4 px (city-block) from `obj` that belong to no particle."""
    near, far = (ndi.binary_dilation(obj, CROSS, iterations=d) for d in RING_PX)
    return far & ~near & ~particles


def _local_contrast(inside: float, ring: np.ndarray) -> tuple[float, float]:
    """Contrast above the ring's median, in counts and in ring standard deviations (nan without a ring to measure:
    fewer than 2 pixels, or all alike); the table's medians leave the nans out."""
    if ring.size < 2:
        return float("nan"), float("nan")
    local, spread = inside - float(np.median(ring)), float(ring.std())
    return local, local / spread if spread > 0 else float("nan")


def _overlapping(mask: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The objects of `mask` that share a pixel with `other` (a neighbour that only borders it does not)."""
    labelled, _ = ndi.label(mask)
    hit = np.unique(labelled[mask & other])
    return np.isin(labelled, hit[hit > 0])


def _at_least(mask: np.ndarray, area: int) -> np.ndarray:
    """The objects of `mask` of `area` pixels or more."""
    labelled, _ = ndi.label(mask)
    sizes = np.bincount(labelled.ravel())
    return (sizes >= area)[labelled] & mask


def _shrunk(mask: np.ndarray) -> np.ndarray:
    """One pixel off every outline, but not off the image's edge (a particle cut by the edge goes on beyond it)."""
    return ndi.binary_erosion(mask, CROSS, border_value=1)


def _object_rows(found: list[Outcome], pixel_nm: float | None) -> list[str]:
    unit = f"nm² (× {pixel_nm:g}² per px)" if pixel_nm else "px (no pixel size in the files)"
    head = f"particles (all test images) | count | area, median [IQR] {unit} | contrast, median [IQR]"
    tail = "local contrast, median [IQR] | local contrast / ring std, median [IQR] | peak probability, median"
    rows = [f"| {head} | {tail} |", "|---|---|---|---|---|---|---|"]
    kinds = {"expert (found + missed)": ("found", "missed")} | {k: (k,) for k in ("found", "missed", "false")}
    for kind, of in kinds.items():
        these = [p for p in found if p.kind in of]
        if not these:
            rows.append(f"| {kind} | 0 | — | — | — | — | — |")
            continue
        area = np.array([p.area_px for p in these], float) * (pixel_nm**2 if pixel_nm else 1.0)
        spreads = [_iqr(np.array([getattr(p, key) for p in these])) for key in ("contrast", "local", "local_snr")]
        peak = np.median([p.peak for p in these])
        rows.append(f"| {kind} | {len(these)} | {_iqr(area)} | {' | '.join(spreads)} | {peak:.2f} |")
    return rows


def _iqr(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if not values.size:
        return "—"
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{q2:.3g} [{q1:.3g}, {q3:.3g}]"


def main() -> None:
    from ncseg.config import load_params

    parser = k_class_parser(__doc__.splitlines()[0], "particle_errors.md")
    parser.add_argument("--particles", help="The particle class (default: the rarest).")
    args = parser.parse_args()
    params = load_params(args.params, args.overrides)
    labels = params.labels
    samples, split, probs = k_class_out_of_fold(params, args.model)
    truth = {i: samples[i].classes for i in probs}
    pixels = {k: sum(int((truth[i] == k).sum()) for i in probs) for k in labels.foreground}
    k = labels.names.index(args.particles) if args.particles else min(labels.particle_ids, key=pixels.get)
    regions = [c for c in labels.foreground if c not in labels.particle_ids]
    ref_class = max(regions, key=pixels.get) if regions else 0
    budget, ceiling, found = {}, {}, []
    for i, prob in probs.items():
        pred, true = prob.argmax(0) == k, truth[i] == k
        budget[i], ceiling[i] = error_budget(pred, true), one_pixel(true)
        region = truth[i] == ref_class
        reference = float(np.median(samples[i].raw[region])) if region.any() else 0.0
        found += particles(pred, true, prob[k], samples[i].raw, reference)
    folds = [split.test(f) for f in range(params.cv.n_folds)]
    name, ref = labels.names[k], labels.names[ref_class]
    sizes = {s.pixel_size_nm for s in samples}
    pixel_nm = sizes.pop() if len(sizes) == 1 else None
    lines = [
        f"# Where {args.model.name} loses {name}: missed, false or outlines (out of fold)",
        "",
        f"Command: `python -m benchmarks.particle_errors -p {args.params} "
        + "".join(f"-S '{o}' " for o in args.overrides)
        + f"--model {args.model}`, on {cpu_model()}, one run. Repeat 0's networks, each over its own fold's test "
        f"images ({len(probs)} images, {params.cv.n_folds} folds); {name} Jaccard per image, mean per fold, then mean "
        f"± std over folds. Contrast: mean raw intensity above the median of the image's {ref} pixels; local "
        "contrast: above the median of the ring 2-4 px around the particle (no particle pixels), in counts and in "
        "units of the ring's standard deviation.",
        "",
        f"| {name} Jaccard | " + " | ".join(f"fold {f}" for f in range(len(folds))) + " | mean ± std |",
        "|---|" + "---|" * (len(folds) + 1),
    ]
    for table in (budget, ceiling):
        summary = fold_means(folds, table)
        for key in next(iter(table.values())):
            per_fold = [np.mean([table[i][key] for i in test]) for test in folds]
            label = key if table is budget else f"expert mask vs itself {key}"
            mean, std = summary[key]
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in per_fold) + f" | {mean:.3f} ± {std:.3f} |")
    lines += ["", *_object_rows(found, pixel_nm), ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
