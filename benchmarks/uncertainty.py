"""Does the uncertainty mean something? Out-of-fold, per trained model:

    python benchmarks/uncertainty.py [-p PARAMS] [--out FILE] [MODEL ...]   -> benchmarks/uncertainty.md

Each CV fold network (repeat 0) predicts the test images of its own fold, which it never saw, as the served model
would with that one network: the card's test-time augmentation, temperature and threshold (`ModelCard.operating`).
Two numbers, pooled over all folds:
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

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Pooled:
    """Out-of-fold pixels and per-image numbers of one model, for one uncertainty definition."""

    uncertainty: list[np.ndarray]
    wrong: list[np.ndarray]
    score: list[float]
    error: list[float]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def out_of_fold(name: str, params, samples, folds: list[int]) -> dict[str, Pooled]:
    """Every sample predicted by its own fold's network: its uncertainty map(s), wrong pixels and error."""
    import torch

    from ncseg.calibration import apply
    from ncseg.inference.tta import TRANSFORMS, predict_views, spread_transforms
    from ncseg.metrics import score
    from ncseg.models.zoo import build_net
    from ncseg.records import ModelCard
    from ncseg.training.cv import weight_file
    from ncseg.uncertainty import image_score, pixel_uncertainty

    folder = params.paths.models / name
    card = ModelCard.load(folder / ModelCard.FILE)
    operating = card.operating(1)
    served = [i for i, t in enumerate(spread_transforms(card.tta)) if t in TRANSFORMS[card.tta]]
    pooled = {"spread (ncseg)": Pooled([], [], [], []), "4p(1-p) of one probability": Pooled([], [], [], [])}
    for k in range(params.cv.n_folds):
        net = build_net(card.spec, len(card.normalization))
        net.load_state_dict(torch.load(folder / weight_file(0, k), map_location="cpu", weights_only=True))
        net.eval()
        for i in (i for i, f in enumerate(folds) if f == k):
            maps = list(predict_views([net], net.geometry, samples[i].image, card.tta, **params.inference.tiling()))
            prob = apply(np.mean([maps[v] for v in served], axis=0), operating.temperature)
            mask = prob > operating.threshold
            wrong = mask != samples[i].mask
            error = 1.0 - score(mask, samples[i].mask).jaccard
            spread = pixel_uncertainty(apply(m, operating.temperature) for m in maps)
            for key, u in (("spread (ncseg)", spread), ("4p(1-p) of one probability", 4 * prob * (1 - prob))):
                pooled[key].uncertainty.append(u.ravel())
                pooled[key].wrong.append(wrong.ravel())
                pooled[key].score.append(image_score(u, mask))
                pooled[key].error.append(error)
    return pooled


def operating_point(folder: Path) -> str:
    from ncseg.records import ModelCard

    card = ModelCard.load(folder / ModelCard.FILE)
    op = card.operating(1)
    return f"tta {card.tta}, temperature {op.temperature:.3g}, threshold {op.threshold:.3g}"


def summarise(p: Pooled) -> tuple[float, float, float]:
    """(AUROC, Spearman, share of wrong pixels)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    wrong = np.concatenate(p.wrong)
    auroc = roc_auc_score(wrong, np.concatenate(p.uncertainty))
    return float(auroc), float(spearmanr(p.score, p.error).statistic), float(wrong.mean())


def main() -> None:
    from ncseg.config import load_params
    from ncseg.data.dataset import load_samples
    from ncseg.records import ModelCard
    from ncseg.training.folds import assign_folds

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
    samples, _ = load_samples(params.paths.augmented, params.inference.normalization)
    folds = assign_folds([s.group for s in samples], params.cv.n_folds, params.cv.seed(params.seed, 0))
    lines = [
        f"# Uncertainty vs error, out of fold ({args.params.name}: {len(samples)} images, {params.cv.n_folds} folds)\n",
        f"Command: `python benchmarks/uncertainty.py -p {args.params.relative_to(ROOT)}`, on {cpu_model()}.\n",
        "| model | uncertainty | pixel AUROC (wrong vs right, goal >= 0.8) | image Spearman (score vs 1 - Jaccard, "
        "goal >= 0.5) | wrong pixels |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        start = time.perf_counter()
        for key, pooled in out_of_fold(name, params, samples, folds).items():
            auroc, spearman, wrong = summarise(pooled)
            lines.append(f"| {name} | {key} | {auroc:.3f} | {spearman:+.3f} | {wrong:.2%} |")
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    lines.append("\nOperating points (model cards; temperature 1: a card from before calibration):\n")
    lines += [f"- {name}: {operating_point(params.paths.models / name)}" for name in names]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
