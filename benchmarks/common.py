"""What every benchmark shares: the machine it ran on, its matmul ceiling, FLOP counts, timing, the networks a
CV trained and how CV scores out-of-fold probabilities, and the markdown table."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ncseg.config import Params
from ncseg.data.dataset import Sample
from ncseg.models.zoo import load_ensemble
from ncseg.records import ModelCard
from ncseg.training.plan import Split
from ncseg.training.scoring import FoldResult, score_nested

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"


def cpu_model() -> str:
    """The processor and the bf16 instructions it has: the figures depend on both."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((set(line.split(":", 1)[1].split()) for line in info.splitlines() if line.startswith("flags")), set())
    bf16 = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return f"{name} ({', '.join(bf16) or 'no bf16 instructions'})"


def median_s(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def achievable_gflops() -> dict[str, float]:
    """What this CPU sustains on a large matrix product: the ceiling conv layers can approach."""
    out = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.rand(2048, 2048, dtype=dtype), torch.rand(2048, 2048, dtype=dtype)
        out[label] = 2 * 2048**3 / median_s(lambda: a @ b, repeat=7) / 1e9  # noqa: B023
    return out


def forward_flops(net: torch.nn.Module, channels: int, size: int) -> float:
    """FLOPs of one forward pass of a `channels` x `size`² image, as torch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, channels, size, size))
    return float(counter.get_total_flops())


def cv_networks(model_dir: Path) -> dict[tuple[int, int], torch.nn.Module]:
    """(repeat, fold) -> the network CV trained for it, as the model card records them (hashes checked)."""
    card = ModelCard.load(model_dir / ModelCard.FILE)
    if unplaced := [w.file for w in card.folds if w.repeat is None or w.fold is None]:
        raise SystemExit(f"{model_dir / ModelCard.FILE}: {', '.join(unplaced)} has no recorded repeat and fold")
    nets, _ = load_ensemble(model_dir)
    return {(w.repeat, w.fold): net for w, net in zip(card.folds, nets, strict=True)}


def k_class_parser(
    description: str, out: str, source: tuple[str, str] = ("--model", "The K-class model folder CV wrote.")
) -> argparse.ArgumentParser:
    """The arguments every out-of-fold benchmark of a K-class model takes: the study, its overrides, where its
    networks or predictions are (`source`: the option and its help; by default the model folder CV wrote) and the
    report file (default benchmarks/`out`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-p", "--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[])
    parser.add_argument(source[0], type=Path, required=True, help=source[1])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / out)
    return parser


def k_class_splits(params: Params) -> tuple[list[Sample], list[Split]]:
    """A K-class study's samples with their class maps and every repeat's split, planned as its CV plans them."""
    from ncseg.data.dataset import load_samples
    from ncseg.training.loop import class_targets
    from ncseg.training.plan import leak_free, plan_repeats

    samples, _ = load_samples(params.paths.augmented, params.inference)
    samples, groups = leak_free(samples, params.cv.leak_threshold)
    class_targets(samples, params.labels, params.paths.augmented)
    return samples, plan_repeats(samples, params, groups)


def k_class_split(params: Params) -> tuple[list[Sample], Split]:
    """A K-class study's samples with their class maps and repeat 0's split."""
    samples, splits = k_class_splits(params)
    return samples, splits[0]


def k_class_out_of_fold(params: Params, model_dir: Path) -> tuple[list[Sample], Split, dict[int, np.ndarray]]:
    """A K-class CV's (samples with their class maps, repeat 0's split, (K, H, W) probability per sample index):
    each test image through its own fold's network of `model_dir`, the split re-planned from the same params."""
    from ncseg.inference.tiling import predict_proba

    samples, split = k_class_split(params)
    nets = cv_networks(model_dir)
    probs = {}
    for k in range(params.cv.n_folds):
        net = nets[(0, k)]
        for i in split.test(k):
            probs[i] = predict_proba([net], net.geometry, samples[i].image, **params.inference.tiling())
    return samples, split, probs


def per_fold_means(folds: list[list[int]], per_image: dict[int, dict[str, float]]) -> dict[str, list[float]]:
    """Every key's mean over each fold's images, fold by fold: what a paired comparison takes."""
    keys = next(iter(per_image.values()))
    return {key: [float(np.mean([per_image[i][key] for i in test])) for test in folds] for key in keys}


def fold_means(folds: list[list[int]], per_image: dict[int, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean over each fold's images, then mean and std over folds, for every key."""
    return {key: (float(np.mean(v)), float(np.std(v, ddof=1))) for key, v in per_fold_means(folds, per_image).items()}


def cv_jaccard_per_fold(
    params: Params, probs: dict[int, np.ndarray], samples: list[Sample], split: Split
) -> list[float]:
    """Each fold's mean test Jaccard with the temperature and threshold chosen on the other folds (as CV does)."""
    results = [FoldResult(k, split.test(k), None) for k in range(params.cv.n_folds)]
    score_nested(results, probs, samples, params)
    return [r.mean("jaccard") for r in results]


def mean_std_table(first: str, rows: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """Markdown rows of (mean, std) per key, one row per name, the keys as columns (`first` heads the names)."""
    keys = list(next(iter(rows.values())))
    return [
        f"| {first} | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
        *[f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in v.values()) + " |" for name, v in rows.items()],
    ]


def table(rows: list[dict], columns: dict[str, str]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[k]) for k in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out: Path, title: str, how: str, table_lines: list[str]) -> None:
    """A benchmark's Markdown file (title, how it was measured: command, CPU, repeats; the table), also printed."""
    text = "\n".join([f"# {title}", "", how, "", *table_lines, ""])
    out.write_text(text)
    print(text)
