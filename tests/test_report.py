import pytest

from ncseg.training.report import best_model, paired_gains, paired_table


def _result(kind: str, per_fold: list[float]) -> dict:
    return {"kind": kind, "jaccard_per_fold": per_fold, "jaccard_mean": sum(per_fold) / len(per_fold)}


def test_gains_over_the_baseline_are_paired_fold_by_fold():
    results = {
        "unet4": _result("unet4", [0.88, 0.90, 0.89]),
        "otsu": _result("classical", [0.89, 0.80, 0.88]),
    }
    (row,) = paired_gains(results)
    assert (row["model"], row["baseline"], row["folds_better"], row["folds"]) == ("unet4", "otsu", 2, 3)
    assert row["gain_mean"] == pytest.approx((-0.01 + 0.10 + 0.01) / 3)
    assert "| unet4 | otsu | +0.033 ± 0.059 | 2 of 3 |" in paired_table([row])
    assert best_model(results) == "unet4", "the classical baseline is never the model to register"
