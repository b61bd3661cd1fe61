"""Temperature scaling makes the served probability mean what it says, and never changes a mask."""

import numpy as np
import pytest

from ncseg import calibration


def _overconfident(n: int, sharpen: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose true NC probability is sigmoid(z), reported as sigmoid(sharpen · z): over-confident for
    sharpen > 1, the usual failure of a segmentation net."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, n)
    truth = rng.uniform(size=n) < 1 / (1 + np.exp(-z))
    return (1 / (1 + np.exp(-sharpen * z))).astype(np.float32), truth


def test_a_temperature_fitted_on_an_overconfident_model_recovers_it_and_lowers_the_ece():
    prob, truth = _overconfident(200_000, sharpen=3.0)
    before = calibration.ece([prob], [truth], bins=15)
    t = calibration.fit_temperature([prob], [truth], max_pixels=100_000, seed=0)
    after = calibration.ece([calibration.apply(prob, t)], [truth], bins=15)
    assert t == pytest.approx(3.0, rel=0.1)
    assert before > 0.05 and after < 0.01 and after < before / 5


def test_a_calibrated_model_keeps_a_temperature_near_one():
    prob, truth = _overconfident(100_000, sharpen=1.0, seed=1)
    assert calibration.fit_temperature([prob], [truth], max_pixels=100_000, seed=0) == pytest.approx(1.0, abs=0.05)


def test_calibration_never_changes_a_mask_at_the_carried_threshold():
    prob, _ = _overconfident(10_000, sharpen=2.0)
    for t, cut in [(0.4, 0.75), (2.5, 0.3), (1.7, 0.5)]:
        calibrated_cut = calibration.threshold_to(cut, t)
        assert np.array_equal(prob > cut, calibration.apply(prob, t) > calibrated_cut)
    assert calibration.apply(prob, 1.0) is prob, "T = 1 is the identity, at no cost"


def test_the_reliability_diagram_counts_every_pixel_once_and_bins_exact_values():
    prob = np.array([0.0, 0.05, 0.5, 0.95, 1.0], np.float32)
    truth = np.array([False, False, True, True, True])
    rows = calibration.reliability([prob], [truth], bins=10)
    assert sum(r["pixels"] for r in rows) == 5
    assert rows[0] == {"bin_centre": 0.05, "predicted": pytest.approx(0.025), "observed": 0.0, "pixels": 2}
    assert rows[-1]["pixels"] == 2 and rows[-1]["observed"] == 1.0, "p = 1 falls in the last bin"


def test_a_class_temperature_recovers_the_sharpening_that_made_probabilities_overconfident():
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 1.5, (3, 200, 200))
    honest = np.exp(z) / np.exp(z).sum(axis=0)
    cumulative = honest.cumsum(axis=0)
    truth = (rng.random((200, 200))[None] > cumulative).sum(axis=0).astype(np.uint8)  # drawn from `honest`
    sharp = np.exp(2.0 * z) / np.exp(2.0 * z).sum(axis=0)  # logits doubled: overconfident
    t = calibration.fit_class_temperature([sharp.astype(np.float32)], [truth], max_pixels=40_000, seed=0)
    assert t == pytest.approx(2.0, rel=0.1)
    calibrated = calibration.apply_classes(sharp.astype(np.float32), t)
    assert np.allclose(calibrated.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(calibrated.argmax(axis=0), sharp.argmax(axis=0))  # the decision does not move
    confidence, right = calibration.top_label(sharp, truth)
    raw_ece = calibration.ece([confidence], [right], bins=15)
    confidence, right = calibration.top_label(calibrated, truth)
    assert calibration.ece([confidence], [right], bins=15) < raw_ece / 2
    assert calibration.apply_classes(sharp, 1.0) is sharp
