"""Stage records: what was written before still loads, and means what it meant."""

import json

import pytest

from ncseg.records import ModelCard, RecordError, WeightFile

from .builders import model_card


def test_a_card_written_before_networks_recorded_their_repeat_and_fold_gets_them_from_its_serving_order(tmp_path):
    files = ["fold0.pt", "repeat1-fold0.pt", "fold1.pt", "repeat1-fold1.pt"]
    old = model_card([WeightFile(file=f, sha256="0" * 64) for f in files], repeats=2).model_dump(mode="json")
    old["folds"] = [{"file": w["file"], "sha256": w["sha256"]} for w in old["folds"]]  # as an older ncseg wrote it
    (tmp_path / "model.json").write_text(json.dumps(old))
    card = ModelCard.load(tmp_path / "model.json")
    assert [(w.repeat, w.fold, w.file) for w in card.folds] == [
        (0, 0, "fold0.pt"),
        (1, 0, "repeat1-fold0.pt"),
        (0, 1, "fold1.pt"),
        (1, 1, "repeat1-fold1.pt"),
    ]


def test_recorded_repeats_and_folds_are_kept_as_written_whatever_the_file_names(tmp_path):
    files = [WeightFile(file=f"net-{j}.pt", sha256="0" * 64, repeat=1 - j, fold=0) for j in range(2)]
    model_card(files, repeats=2).save(tmp_path / "model.json")
    card = ModelCard.load(tmp_path / "model.json")
    assert [(w.repeat, w.fold, w.file) for w in card.folds] == [(1, 0, "net-0.pt"), (0, 0, "net-1.pt")]


def test_a_class_score_is_read_per_fold_and_its_noise_from_the_repeats():
    from .builders import cv_summary

    r = cv_summary("unet4", "unet4", [0.8, 0.9, 0.7, 0.8])
    assert r.score_per_fold(None) == r.jaccard_per_fold and r.score_mean(None) == r.jaccard_mean
    with pytest.raises(RecordError, match="unet4: no per-fold pt Jaccard in its CV summary"):
        r.score_mean("pt")
    folds = {"pt": (0.5, 0.7, 0.6, 0.8)}
    two_repeats = r.model_copy(update={"n_folds": 2, "repeats": 2, "class_jaccard_per_fold": folds})
    assert two_repeats.score_mean("pt") == pytest.approx(0.65)
    assert two_repeats.score_noise("pt") == pytest.approx(0.0707107, abs=1e-6)  # repeat means 0.6 and 0.7
    one_repeat = r.model_copy(update={"class_jaccard_per_fold": folds})
    assert one_repeat.score_noise("pt") == pytest.approx(0.1290994 / 2, abs=1e-6)  # standard error over 4 folds
