"""Which alias a version earns, on plain values: the merit gate and the verdict, without an MLflow store."""

import pytest

from ncseg.records import Summary
from ncseg.registry.policy import CHALLENGER, CHAMPION, Candidate, merit_gate, verdict
from ncseg.training.report import best_model, paired_gains

from ..builders import cv_summary

SPEAKS = '[{"type": "string", "name": "image", "required": true}]'  # today's interface, as a tag holds it


def _cand(architecture, jaccard, noise=0.0, data="d1"):
    return Candidate(architecture, jaccard, noise, data)


def _champion(jaccard, speaks=SPEAKS, noise=0.0, data="d1"):
    """The tags of the version holding @champion, as registry.promote tags a version."""
    return {"cv_jaccard_mean": str(jaccard), "interface": speaks, "cv_noise": str(noise), "data_md5": data}


def _summary(**per_fold: list[float]) -> Summary:
    results = {
        name: cv_summary(name, "classical" if name == "otsu" else "unet4", folds) for name, folds in per_fold.items()
    }
    return Summary(best=best_model(results), models=results, paired_gains=tuple(paired_gains(results)))


def test_the_first_version_past_the_gate_is_champion():
    alias, reason = verdict(None, None, _cand("unet4", 0.90), margin=0.0, interface=SPEAKS)
    assert (alias, reason) == (
        CHAMPION,
        "first version to pass the gate (beats the classical baseline): no champion yet",
    )


def test_only_an_improvement_beyond_the_margin_takes_the_alias():
    champion = _champion(0.90)
    alias, reason = verdict(champion, "1", _cand("smp", 0.85), margin=0.0, interface=SPEAKS)
    assert alias == CHALLENGER and "not beyond" in reason
    small = verdict(champion, "1", _cand("unet4", 0.905), margin=0.01, interface=SPEAKS)
    assert small[0] == CHALLENGER, "a gain inside the margin is not enough"
    better = verdict(champion, "1", _cand("unet4", 0.93), margin=0.01, interface=SPEAKS)
    assert better == (
        CHAMPION,
        "CV Jaccard 0.9300 vs champion v1 0.9000 (+0.0300): beyond the run-to-run noise 0.0000 and the margin 0.01",
    )


def test_a_junk_first_model_below_the_baseline_never_passes_the_gate():
    summary = _summary(unet4=[0.10, 0.21], otsu=[0.92, 0.93])
    gate = merit_gate("unet4", summary, min_jaccard=None)
    assert gate is not None and gate.startswith("does not beat the classical baseline otsu on the same folds")


def test_a_good_first_model_that_beats_the_baseline_on_the_same_folds_passes_the_gate():
    summary = _summary(unet4=[0.95, 0.94], otsu=[0.92, 0.93])
    assert merit_gate("unet4", summary, min_jaccard=None) is None


def test_the_floor_and_a_missing_baseline_also_hold_the_gate():
    good = _summary(unet4=[0.95, 0.94], otsu=[0.92, 0.93])
    assert "below register.min_jaccard 0.96" in merit_gate("unet4", good, min_jaccard=0.96)
    alone = _summary(unet4=[0.95, 0.94])
    assert "no classical baseline" in merit_gate("unet4", alone, min_jaccard=None)
    assert merit_gate("unet4", alone, min_jaccard=0.9) is None


def test_a_champion_that_takes_another_input_gives_way_to_one_clients_can_call():
    old = _champion(0.97, speaks='[{"type": "tensor", "tensor-spec": {"dtype": "float32"}}]')
    alias, reason = verdict(old, "1", _cand("smp", 0.96), margin=0.0, interface=SPEAKS)
    assert alias == CHAMPION and reason == "champion v1 takes another input than today's clients send"


def test_a_gain_inside_the_measured_run_to_run_noise_leaves_the_champion_in_place():
    champion = _champion(0.910, noise=0.004)
    lucky = verdict(champion, "1", _cand("unet4", 0.913, noise=0.002), margin=0.0, interface=SPEAKS)
    assert lucky[0] == CHALLENGER, "+0.003 is inside the champion's measured noise (0.004)"
    assert "not beyond the run-to-run noise 0.0040" in lucky[1]
    beyond = verdict(champion, "1", _cand("unet4", 0.920, noise=0.002), margin=0.0, interface=SPEAKS)
    assert beyond[0] == CHAMPION


def test_a_champion_measured_on_other_data_gives_way():
    champion = _champion(0.95, data="old-data")
    alias, reason = verdict(champion, "1", _cand("unet4", 0.93, data="new-data"), margin=0.0, interface=SPEAKS)
    assert alias == CHAMPION and "measured on other data" in reason
    assert "md5 old-data, now new-data" in reason


@pytest.mark.parametrize("missing", ["cv_jaccard_mean", "cv_noise"])
def test_a_champion_tagged_before_a_score_was_recorded_is_compared_as_before(missing):
    """A tag an older version lacks: no score (NaN, nothing beats it) or no noise (0)."""
    tags = {k: v for k, v in _champion(0.90, noise=0.01).items() if k != missing}
    alias, _ = verdict(tags, "1", _cand("unet4", 0.95), margin=0.0, interface=SPEAKS)
    assert alias == (CHALLENGER if missing == "cv_jaccard_mean" else CHAMPION)


def _class_summary(score, **folds):
    """A 3-class study's summary: per model (headline per fold, pt per fold), ranked and paired on `score`."""
    results = {}
    for name, (headline, pt) in folds.items():
        r = cv_summary(name, "classical" if name == "levels" else "unet4", headline)
        results[name] = r.model_copy(
            update={"class_jaccard_per_fold": {"support": tuple(headline), "pt": tuple(pt)}, "decision": "argmax"}
        )
    gains = paired_gains(results, score)
    return Summary(best=best_model(results, score), models=results, paired_gains=tuple(gains), score=score)


def test_a_study_that_declares_its_particle_class_is_ranked_gated_and_compared_on_it():
    """unet4 wins on the mean over classes, smp on Pt: with register.score pt, smp is the candidate, and a network
    that beats the baseline on the mean but not on Pt does not pass the gate."""
    folds = {
        "unet4": ([0.80, 0.82, 0.81], [0.50, 0.52, 0.55]),
        "smp": ([0.78, 0.80, 0.79], [0.60, 0.61, 0.63]),
        "levels": ([0.70, 0.72, 0.71], [0.58, 0.59, 0.60]),
    }
    assert _class_summary(None, **folds).best == "unet4"
    summary = _class_summary("pt", **folds)
    assert summary.best == "smp"
    assert merit_gate("smp", summary, None) is None
    assert merit_gate("unet4", summary, None).startswith(
        "does not beat the classical baseline levels on the same folds (pt Jaccard 0.5233 vs 0.5900"
    )
    assert merit_gate("smp", summary, 0.7) == "CV pt Jaccard 0.6133 is below register.min_jaccard 0.7"


def test_a_champion_ranked_by_another_score_gives_way_to_one_ranked_by_the_declared_score():
    tags = _champion(0.95) | {"cv_score_mean": "0.95", "cv_score": ""}  # ranked by the mean Jaccard
    candidate = Candidate("smp", 0.61, 0.0, "d1", score="pt")
    alias, reason = verdict(tags, "4", candidate, margin=0.0, interface=SPEAKS)
    assert alias == CHAMPION and reason == (
        "champion v4 was ranked by Jaccard, the study now by pt Jaccard (register.score): its score is not comparable"
    )
    tags = _champion(0.0) | {"cv_score_mean": "0.63", "cv_score": "pt"}  # the same score: compared on it
    alias, reason = verdict(tags, "5", candidate, margin=0.0, interface=SPEAKS)
    assert alias == CHALLENGER and reason.startswith("CV pt Jaccard 0.6100 vs champion v5 0.6300 (-0.0200)")
