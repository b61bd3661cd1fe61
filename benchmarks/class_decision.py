"""How a K-class model should decide, measured on its own CV networks out of fold: the argmax, or a threshold on the
rare particle class; and whether a temperature calibrates its class probabilities.

    python -m benchmarks.class_decision -p PARAMS -S LABELS ... --model MODEL_DIR [--out FILE]

The networks are the model folder's (`ncseg train` with a label set of more than two classes): each test image of
repeat 0's split (the split CV made, re-planned from the same params) through the network of its fold, never one
that saw it. Decisions, each scored per image and averaged per fold as CV does:
- argmax (what CV and the served model do);
- `<class> > t`: a pixel is the particle class where its probability exceeds t, else the argmax of the others,
  with t chosen from `threshold.sweep` on the *other* folds' predictions (nested, as the binary threshold is) to
  maximise the mean foreground Jaccard, and also with the best t for the rare class's own Jaccard.
Calibration: a temperature on log p (softmax(log p / T)), fitted on the other folds, top-label expected calibration
error (15 bins) of each test fold before and after.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import cpu_model, fold_means, k_class_out_of_fold, k_class_parser, mean_std_table


def with_threshold(prob: np.ndarray, k: int, t: float) -> np.ndarray:
    """Class `k` where its probability exceeds `t`, elsewhere the argmax of the other classes."""
    others = prob.copy()
    others[k] = -1.0
    pred = others.argmax(axis=0).astype(np.uint8)
    pred[prob[k] > t] = k
    return pred


def main() -> None:
    from ncseg.calibration import apply_classes, ece, fit_class_temperature, top_label
    from ncseg.config import load_params
    from ncseg.metrics import class_scores, headline

    parser = k_class_parser(__doc__.splitlines()[0], "class_decision.md")
    args = parser.parse_args()
    params = load_params(args.params, args.overrides)
    labels = params.labels
    samples, split, probs = k_class_out_of_fold(params, args.model)
    truth = {i: samples[i].classes for i in probs}
    pixels = {k: sum(int((truth[i] == k).sum()) for i in probs) for k in labels.particle_ids}
    rare = min(pixels, key=pixels.get)
    name = labels.names[rare]
    folds = [split.test(k) for k in range(params.cv.n_folds)]

    def scores(pred: np.ndarray, i: int) -> dict[str, float]:
        per = class_scores(pred, truth[i], labels)
        row = {f"{labels.names[c]}_jaccard": per[c].jaccard for c in labels.foreground}
        return row | {f"{name}_object_f1": per[rare].object_f1, "mean_fg_jaccard": headline(per, labels).jaccard}

    grid = params.threshold.grid()
    cache = {(i, t): scores(with_threshold(probs[i], rare, t), i) for i in probs for t in grid}
    rules: dict[str, dict[int, dict[str, float]]] = {"argmax": {i: scores(probs[i].argmax(0), i) for i in probs}}
    chosen: dict[str, list[float]] = {}
    for target in ("mean_fg_jaccard", f"{name}_jaccard"):
        rule, picks = f"{name} > t (t nested, for {target})", []
        rules[rule] = {}
        for k, test in enumerate(folds):
            others = [i for j, f in enumerate(folds) if j != k for i in f]
            t = max(grid, key=lambda t: np.mean([cache[(i, t)][target] for i in others]))
            picks.append(t)
            rules[rule] |= {i: cache[(i, t)] for i in test}
        chosen[rule] = picks
    summary = {rule: fold_means(folds, per_image) for rule, per_image in rules.items()}
    ece_rows = []
    for k, test in enumerate(folds):
        others = [i for j, f in enumerate(folds) if j != k for i in f]
        fit = params.calibration
        temp = fit_class_temperature(
            [probs[i] for i in others], [truth[i] for i in others], max_pixels=fit.fit_pixels, seed=params.seed
        )
        raw = [top_label(probs[i], truth[i]) for i in test]
        cal = [top_label(apply_classes(probs[i], temp), truth[i]) for i in test]
        calibrated = {i: apply_classes(probs[i], temp) for i in test}
        rare_raw = ece([probs[i][rare] for i in test], [truth[i] == rare for i in test], bins=fit.bins)
        rare_cal = ece([calibrated[i][rare] for i in test], [truth[i] == rare for i in test], bins=fit.bins)
        top_raw, top_cal = ece(*zip(*raw, strict=True), bins=fit.bins), ece(*zip(*cal, strict=True), bins=fit.bins)
        ece_rows.append((k, temp, top_raw, top_cal, rare_raw, rare_cal))
    lines = [
        f"# How a {len(labels.classes)}-class model decides: argmax vs a threshold on {name}, out of fold",
        "",
        f"Command: `python -m benchmarks.class_decision -p {args.params} -S <labels> --model {args.model}`, on "
        f"{cpu_model()}, one run. The model folder's networks of repeat 0, each over its own fold's test images "
        f"({len(probs)} images, {params.cv.n_folds} folds); mean over a fold's images, then mean ± std over folds. "
        f"{name} is the rarest particle class ({pixels[rare]} px of the test images).",
        "",
        *mean_std_table("decision", summary),
        "",
        *[f"- {rule}: t per fold {', '.join(f'{t:g}' for t in picks)}" for rule, picks in chosen.items()],
        "",
        f"Calibration (ECE, 15 bins; T fitted on the other folds): top-label (the argmax class's probability: "
        f"mostly confident background) and {name}'s own probability against {name} pixels:",
        "",
        f"| fold | T | top-label ECE raw | calibrated | {name} ECE raw | calibrated |",
        "|---|---|---|---|---|---|",
        *[f"| {k} | {t:.3f} | {a:.4f} | {b:.4f} | {c:.4f} | {d:.4f} |" for k, t, a, b, c, d in ece_rows],
        "| mean | " + " | ".join(f"{np.mean([row[j] for row in ece_rows]):.4f}" for j in range(1, 6)) + " |",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
