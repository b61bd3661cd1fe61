"""A K-class CV's repeats one by one, their R-network ensemble class by class, and the material mask (every
foreground class as one) that a binary study of the same images scores — from the out-of-fold probabilities the
CV itself kept (predicted with the study's `inference.tta`), or predicted again with another TTA.

    python -m benchmarks.class_repeats -p PARAMS [-S ...] --folds FOLD_CACHE/<model>/<key> [--tta d4] [--out FILE]

`--folds` is the folder `paths.fold_cache` gave one model's CV (`r<repeat>-f<fold>/probs.npz`, each fold's test
images in test order). The splits are re-planned from the same params. Each repeat is scored on its own split: the
argmax per image, mean over a fold's images, then mean ± std over folds, as CV does. The ensemble averages the R
repeats' probabilities of each image (each out of fold: every repeat's network of that image never saw it), takes
the argmax and is scored on repeat 0's folds, as CV scores its headline ensemble. CV reports the ensemble's mean
foreground Jaccard only; here it is per class.

`--tta flip|d4` predicts every test image again with its fold's kept network, averaged over the mirrored (and
turned) copies (`ncseg.inference.tta`), instead of reading the probabilities CV kept: what test-time augmentation
adds, class by class, on the same folds. The network is rebuilt from the study's spec of the model the folder is
named for (`<fold_cache>/<model>/<key>`), in CV's memory layout, so `none` re-predicts the kept probabilities of a
study with `inference.tta: none` (bf16 kernels may round a few of them apart).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import cpu_model, fold_means, k_class_parser, k_class_splits, mean_std_table
from ncseg.config import TTA, NeuralParams, Params
from ncseg.inference.tta import TRANSFORMS, predict_tta
from ncseg.labels import LabelSet
from ncseg.metrics import class_scores, headline, score
from ncseg.models.zoo import build_net


def image_scores(prob: np.ndarray, truth: np.ndarray, labels: LabelSet) -> dict[str, float]:
    """One image's argmax scored per class and as material: a Pt pixel called support is wrong for both classes
    but right for the material mask."""
    pred = prob.argmax(0)
    per = class_scores(pred, truth, labels)
    row = {f"{labels.names[c]} Jaccard": per[c].jaccard for c in labels.foreground}
    row |= {f"{labels.names[c]} object F1": per[c].object_f1 for c in labels.particle_ids}
    material = score(pred > 0, truth > 0).jaccard
    return row | {"material Jaccard": material, "mean foreground Jaccard": headline(per, labels).jaccard}


def predicted_again(
    weights: Path, spec: NeuralParams, params: Params, images: list[np.ndarray], tta: TTA
) -> list[np.ndarray]:
    """A kept fold's network, rebuilt from the study's spec, on its test images with test-time augmentation `tta`
    (tiled and in the precision CV predicts in)."""
    net = build_net(spec, len(params.inference.normalization), params.labels.n_outputs)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval().to(memory_format=torch.channels_last)  # as training leaves it: oneDNN's layout, its kernels
    return [predict_tta([net], net.geometry, image, tta, **params.inference.tiling()) for image in images]


def network_spec(params: Params, folds: Path) -> NeuralParams:
    """The spec of the network whose folds `folds` holds: the model the folder above it is named for."""
    name = folds.resolve().parent.name
    if name not in params.models:
        raise SystemExit(f"{folds}: not <fold_cache>/<model>/<key> of a study model ({', '.join(params.models)})")
    spec = params.models[name]
    if not isinstance(spec, NeuralParams):
        raise SystemExit(f"{folds}: {name!r} has no network to predict again with --tta")
    return spec


def main() -> None:
    from ncseg.config import load_params
    from ncseg.training.resume import FoldStore

    source = ("--folds", "The folder paths.fold_cache gave one model's CV: <fold_cache>/<model>/<key>.")
    parser = k_class_parser(__doc__.splitlines()[0], "class_repeats.md", source)
    parser.add_argument("--tta", choices=list(TRANSFORMS), default=None, help="predict again with this TTA")
    args = parser.parse_args()
    params = load_params(args.params, args.overrides)
    spec = network_spec(params, args.folds) if args.tta is not None else None
    labels = params.labels
    samples, splits = k_class_splits(params)
    store = FoldStore(args.folds)
    probs: list[dict[int, np.ndarray]] = []
    for split in splits:
        found = {}
        for k in range(params.cv.n_folds):
            test = split.test(k)
            fold = store.get(split.index, k, len(test))
            if fold is None:
                raise SystemExit(f"{args.folds}: no finished fold r{split.index}-f{k}")
            if fold.params.get("seed") != split.seed + k:
                raise SystemExit(f"{args.folds}: fold r{split.index}-f{k} was trained on another split than -p/-S plan")
            fold_probs = fold.probs
            if spec is not None:
                images = [samples[i].image for i in test]
                fold_probs = predicted_again(fold.weights, spec, params, images, args.tta)
            found |= dict(zip(test, fold_probs, strict=True))
        probs.append(found)

    def scores(prob: np.ndarray, i: int) -> dict[str, float]:
        return image_scores(prob, samples[i].classes, labels)

    def folds(r: int) -> list[list[int]]:
        return [splits[r].test(k) for k in range(params.cv.n_folds)]

    per_repeat = [{i: scores(p, i) for i, p in found.items()} for found in probs]
    rows = {f"repeat {r}": fold_means(folds(r), per_image) for r, per_image in enumerate(per_repeat)}
    every = {
        key: [
            float(np.mean([per_image[i][key] for i in test]))
            for r, per_image in enumerate(per_repeat)
            for test in folds(r)
        ]
        for key in per_repeat[0][0]
    }
    rows[f"all {len(splits)} × {params.cv.n_folds} folds (what CV reports)"] = {
        key: (float(np.mean(v)), float(np.std(v, ddof=1))) for key, v in every.items()
    }
    mean_probs = {i: np.mean([found[i] for found in probs], axis=0) for i in probs[0]}
    rows[f"ensemble of the {len(splits)} repeats (repeat 0's folds)"] = fold_means(
        folds(0), {i: scores(p, i) for i, p in mean_probs.items()}
    )
    options = "".join(f" -S {shlex.quote(o)}" for o in args.overrides)
    options += f" --folds {args.folds}" + ("" if args.tta is None else f" --tta {args.tta}")
    source = "the out-of-fold probabilities the CV kept"
    if args.tta is not None:
        source = f"each fold's kept network predicting its test images again with TTA `{args.tta}`"
    lines = [
        f"# A {len(labels.classes)}-class CV by repeat, its ensemble per class, and its material mask",
        "",
        f"Command: `python -m benchmarks.class_repeats -p {args.params}{options}`, on "
        f"{cpu_model()}: {source} ({len(samples)} images, {len(splits)} repeats of "
        f"{params.cv.n_folds} folds), the argmax per image; mean over a fold's images, then mean ± std over folds. "
        "Material: every foreground class as one mask against the expert's (what a binary study scores).",
        "",
        *mean_std_table("", rows),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
