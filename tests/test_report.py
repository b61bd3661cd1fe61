import pytest

from ncseg.training.report import best_model, paired_gains, paired_table

from .builders import cv_summary


def test_gains_over_the_baseline_are_paired_fold_by_fold():
    results = {
        "unet4": cv_summary("unet4", "unet4", [0.88, 0.90, 0.89]),
        "otsu": cv_summary("otsu", "classical", [0.89, 0.80, 0.88]),
    }
    (row,) = paired_gains(results)
    assert (row.model, row.baseline, row.folds_better, row.folds) == ("unet4", "otsu", 2, 3)
    assert row.gain_mean == pytest.approx((-0.01 + 0.10 + 0.01) / 3)
    assert "| unet4 | otsu | +0.033 ± 0.059 | 2 of 3 |" in paired_table([row])
    assert best_model(results) == "unet4", "the classical baseline is never the model to register"
