"""Stage records: what was written before still loads, and means what it meant."""

import json

from ncseg.records import ModelCard, WeightFile

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
