"""Does the uncertainty mean something? Out-of-fold, per trained model:

    python -m benchmarks.uncertainty [-p PARAMS] [--out FILE] [MODEL ...]   -> benchmarks/uncertainty.md

Each image is predicted by the CV networks that never saw it, as the served model would predict it: with one network
(repeat 0's network of the image's fold) and, where the card has R repeats, with the R-network ensemble CV measured
(each repeat's network of the fold that held the image out); the card's test-time augmentation, temperature and
threshold (`ModelCard.operating`). Two numbers, pooled over all images:
- per pixel: AUROC of the uncertainty (ncseg.uncertainty) for telling wrong mask pixels from right ones;
- per image: Spearman correlation of the image score (summary.csv's `uncertainty`) with the image's error,
  1 - Jaccard. Rotated copies of one raw image are scored as separate images, as CV scores them.
The free alternative, the binary entropy 4p(1-p) of the served probability, is measured beside it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, cpu_model, cv_networks


@dataclass
class Pooled:
    """Out-of-fold pixels and per-image numbers of one model, for one uncertainty definition."""

    uncertainty: list[np.ndarray]
    wrong: list[np.ndarray]
    score: list[float]
    error: list[float]


def _pool(pooled: Pooled, u: np.ndarray, mask: np.ndarray, wrong: np.ndarray, error: float) -> None:
    from ncseg.uncertainty import image_score

    pooled.uncertainty.append(u.ravel())
    pooled.wrong.append(wrong.ravel())
    pooled.score.append(image_score(u, mask))
    pooled.error.append(error)


def out_of_fold(name: str, params, samples, splits: list[list[int]], members: int) -> dict[str, Pooled]:
    """Every sample predicted as the served model with `members` networks would, by networks that never saw it:
    repeat r's network of the fold that held the sample out, r < members. Uncertainty maps, wrong pixels, error."""
    from ncseg.calibration import apply
    from ncseg.inference.tta import TRANSFORMS, predict_views, spread_transforms
    from ncseg.metrics import score
    from ncseg.records import ModelCard
    from ncseg.uncertainty import pixel_uncertainty

    folder = params.paths.models / name
    card = ModelCard.load(folder / ModelCard.FILE)
    operating = card.operating(members)
    # every member's views of spread_transforms (at least the four mirror images) make the spread, as served
    served = [i for i, t in enumerate(spread_transforms(card.tta)) if t in TRANSFORMS[card.tta]]

    nets = cv_networks(folder)
    # which of the two the served model answers with (ncseg.serving): the spread where `tta` has several views,
    # 4p(1-p) of the mean probability where it has one
    many = len(TRANSFORMS[card.tta]) > 1
    views_said = f"{len(spread_transforms(card.tta))} views" + ("" if members == 1 else f" x {members} networks")
    spread = f"spread over {views_said}" + (" (served)" if many else "")
    one_view = "4p(1-p) of the served probability" + ("" if many else " (served)")
    pooled = {spread: Pooled([], [], [], []), one_view: Pooled([], [], [], [])}
    for i, sample in enumerate(samples):
        own = [nets[r, splits[r][i]] for r in range(members)]
        tiling = params.inference.tiling()
        views = [v for n in own for v in predict_views([n], n.geometry, sample.image, card.tta, **tiling)]
        per_member = len(views) // members
        used = [views[m * per_member + v] for m in range(members) for v in served]
        prob = apply(np.mean(used, axis=0), operating.temperature)
        mask = prob > operating.threshold
        wrong, error = mask != sample.mask, 1.0 - score(mask, sample.mask).jaccard
        _pool(pooled[spread], pixel_uncertainty(apply(m, operating.temperature) for m in views), mask, wrong, error)
        _pool(pooled[one_view], 4 * prob * (1 - prob), mask, wrong, error)
    return pooled


def operating_point(folder: Path, members: int) -> str:
    from ncseg.records import ModelCard

    card = ModelCard.load(folder / ModelCard.FILE)
    op = card.operating(members)
    return f"{members} network(s), tta {card.tta}, temperature {op.temperature:.3g}, threshold {op.threshold:.3g}"


CONFIDENT = 0.1  # an uncertainty below this: the views agree, the mask there is not in doubt


def summarise(p: Pooled) -> tuple[float, float, float, float]:
    """(AUROC, Spearman, share of wrong pixels, share of the wrong pixels that are confidently wrong). The last is
    the ceiling of any uncertainty: an error every view agrees on cannot be ranked by how much the views disagree."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    wrong, uncertainty = np.concatenate(p.wrong), np.concatenate(p.uncertainty)
    auroc = roc_auc_score(wrong, uncertainty)
    confident = float(np.mean(uncertainty[wrong] < CONFIDENT)) if wrong.any() else 0.0
    return float(auroc), float(spearmanr(p.score, p.error).statistic), float(wrong.mean()), confident


def main() -> None:
    from ncseg.config import load_params
    from ncseg.data.dataset import load_samples
    from ncseg.records import ModelCard
    from ncseg.training.plan import plan_repeats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="models to measure (default: every trained one)")
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "uncertainty.md")
    args = parser.parse_args()
    args.params = args.params.resolve()
    params = load_params(args.params)
    names = args.models or [
        n
        for n in params.models
        if (params.paths.models / n / ModelCard.FILE).is_file() and params.model(n).kind != "classical"
    ]
    if not names:
        raise SystemExit(f"no trained models under {params.paths.models}: run the study (dvc repro) first")
    samples, _ = load_samples(params.paths.augmented, params.inference)
    splits = [split.folds for split in plan_repeats(samples, params)]
    lines = [
        f"# Uncertainty vs error, out of fold ({args.params.name}: {len(samples)} images, {params.cv.n_folds} folds)\n",
        f"Command: `python -m benchmarks.uncertainty -p {args.params.relative_to(ROOT)}`, on {cpu_model()}.\n",
        "| model | uncertainty | pixel AUROC (wrong vs right, goal >= 0.8) | image Spearman (score vs 1 - Jaccard, "
        f"goal >= 0.5) | wrong pixels | wrong with uncertainty < {CONFIDENT} |",
        "|---|---|---|---|---|---|",
    ]
    points = []
    for name in names:
        repeats = ModelCard.load(params.paths.models / name / ModelCard.FILE).repeats
        for members in sorted({1, repeats}):  # one network, and the ensemble CV measured where there is one
            start = time.perf_counter()
            for key, pooled in out_of_fold(name, params, samples, splits, members).items():
                auroc, spearman, wrong, confident = summarise(pooled)
                lines.append(f"| {name} | {key} | {auroc:.3f} | {spearman:+.3f} | {wrong:.2%} | {confident:.0%} |")
            points.append(f"- {name}: {operating_point(params.paths.models / name, members)}")
            print(f"{name}, {members} network(s): {time.perf_counter() - start:.0f} s", flush=True)
    lines.append("\nOperating points (model cards; temperature 1: a card from before calibration):\n")
    lines += points
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
