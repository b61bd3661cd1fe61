"""Class ablations: each variant is the study with one change (and one repeat unless it names more), and is paired
with the study's own repeats, fold by fold."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.class_ablations import ABLATIONS, rows, variant
from ncseg.config import load_params
from ncseg.records import CVSummary

STUDY = Path(__file__).resolve().parents[2] / "studies" / "pt-alumina-classes" / "params.yaml"


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_a_variant_is_the_study_with_one_change_and_the_studys_seeds(name):
    study, v = load_params(STUDY), variant(STUDY, "unet4", name)
    assert v.cv.repeats <= study.cv.repeats, "every repeat of a variant has one of the study's to pair with"
    same = [v.cv.seed(v.seed, r) == study.cv.seed(study.seed, r) for r in range(v.cv.repeats)]
    assert all(same), "each repeat's split and seeds are the study's"
    assert ("cv.repeats" in " ".join(ABLATIONS[name][1])) == (v.cv.repeats > 1), "one repeat unless named"
    assert v.paths.models == STUDY.parent / "ablations" / name / "models", "its folders, not the study's"
    unchanged = {"paths", "cv"}
    changed = v.model_dump(exclude=unchanged) != study.model_dump(exclude=unchanged)
    if ABLATIONS[name][1]:
        assert changed, f"{name}: its -S assignments change nothing"
    else:  # the rerun: the study itself, trained again (on another CPU kind, say)
        assert not changed


def _summary(model: str, support: list[float], pt: list[float], repeats: int = 1) -> CVSummary:
    return CVSummary.model_construct(
        model=model,
        n_folds=3,
        repeats=repeats,
        class_jaccard_per_fold={"support": tuple(support), "pt": tuple(pt)},
        classes={"support": {"jaccard_mean": 0.0}, "pt": {"object_f1_mean": 0.5}},
        material_jaccard_mean=0.9,
    )


def test_the_gain_is_paired_with_the_studys_first_repeat_only():
    # 3 repeats x 3 folds; repeats 1 and 2 are far off, so pairing with them would show
    study = _summary("unet4", [0.8, 0.9, 0.7] + [0.1] * 6, [0.5, 0.6, 0.4] + [0.0] * 6, repeats=3)
    trained = {"bigger": (_summary("unet4", [0.85, 0.95, 0.75], [0.4, 0.7, 0.4]), 12.0)}
    table = rows(study, trained, ["support", "pt"])
    assert table[2].startswith("| study, repeat 0 | 0.800 ± 0.100 |"), "the baseline is repeat 0's three folds"
    cells = [c.strip() for c in table[3].split("|")]
    assert cells[1:4] == ["bigger", "0.850 ± 0.100", "+0.050 [+0.050, +0.050], 3 of 3"]
    assert cells[4] == "0.500 ± 0.173" and cells[5].endswith("1 of 3"), "Pt: one fold up, one down, one equal"
    assert cells[6:9] == ["0.500", "0.900", "12.0"], "particle F1, material, minutes"


def test_a_variant_of_more_repeats_is_paired_with_as_many_of_the_studys_folds():
    study = _summary("unet4", [0.8, 0.9, 0.7] + [0.6, 0.7, 0.5] + [0.1] * 3, [0.5] * 9, repeats=3)
    trained = {"x2": (_summary("unet4", [0.85, 0.95, 0.75, 0.65, 0.75, 0.55], [0.5] * 6, repeats=2), 20.0)}
    table = rows(study, trained, ["support", "pt"])
    assert table[3].startswith("| study, repeats 0–1 | 0.700 ± 0.141 |"), "the baseline the variant is paired with"
    cells = [c.strip() for c in table[4].split("|")]
    assert cells[3] == "+0.050 [+0.050, +0.050], 6 of 6", "repeats 0 and 1 of the study, not its third"
