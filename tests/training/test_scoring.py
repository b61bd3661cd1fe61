"""Scoring out-of-fold predictions: every fold is cut at a setting chosen without its own images."""

import subprocess
import sys

import numpy as np

from ncseg.config import load_params
from ncseg.data.dataset import Sample
from ncseg.metrics import jaccard
from ncseg.training.scoring import FoldResult, nested_thresholds, score_nested

from ..conftest import ROOT


def _scaled(name: str, prob_scale: float) -> tuple[Sample, float]:
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    return Sample(name, name, mask.astype(np.float32), mask[None].astype(np.float32), mask, None), prob_scale


def test_a_folds_threshold_is_chosen_without_its_own_images():
    # Fold 0's images are only right at a low threshold, fold 1's only at a high one: each fold must get the other's.
    pairs = [_scaled("a", 0.35), _scaled("b", 0.35), _scaled("c", 0.85), _scaled("d", 0.85)]
    samples = [s for s, _ in pairs]
    probs = {i: np.where(s.mask, scale, 0.2 * scale) for i, (s, scale) in enumerate(pairs)}
    results = [FoldResult(0, [0, 1], "r0"), FoldResult(1, [2, 3], "r1")]
    params = load_params(ROOT / "params.yaml", ["threshold.sweep=[0.1, 0.9, 0.2]", "calibration.method=none"])
    nested_thresholds(results, probs, samples, params)
    assert results[0].threshold in (0.5, 0.7), "fold 0 got a threshold tuned on its own images"
    assert results[1].threshold in (0.1, 0.3)


def test_each_folds_test_images_are_cut_and_scored_at_that_folds_nested_threshold():
    pairs = [_scaled("a", 0.35), _scaled("b", 0.35), _scaled("c", 0.85), _scaled("d", 0.85)]
    samples = [s for s, _ in pairs]
    probs = {i: np.where(s.mask, scale, 0.2 * scale) for i, (s, scale) in enumerate(pairs)}
    results = [FoldResult(0, [0, 1], None), FoldResult(1, [2, 3], None)]
    params = load_params(ROOT / "params.yaml", ["threshold.sweep=[0.1, 0.9, 0.2]", "calibration.method=none"])
    masks = score_nested(results, probs, samples, params)
    for r in results:
        assert all(np.array_equal(masks[i], probs[i] > r.threshold) for i in r.test)
        assert [s.jaccard for s in r.scores] == [jaccard(masks[i], samples[i].mask) for i in r.test]
    assert results[0].mean("jaccard") == 0.0, "fold 0's images are only right at a threshold fold 1 never chooses"


def test_scoring_is_numpy_only_and_loads_no_network_code():
    code = "import sys, ncseg.training.scoring; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, "scoring imported torch"
