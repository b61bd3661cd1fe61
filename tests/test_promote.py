"""Aliases move only on improvement: checked against a real (SQLite) MLflow registry."""

import json

import mlflow
import pytest

from ncseg.registry.promote import CHALLENGER, CHAMPION, _promote, _stage_members, fingerprint, interface


@pytest.fixture
def client(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("nc")
    return client


def _version(client, tmp_path, jaccard, speaks=None):
    source = tmp_path / f"model-{jaccard}"
    source.mkdir()
    tags = {"cv_jaccard_mean": str(jaccard), "interface": speaks or interface()}
    return client.create_model_version("nc", str(source), tags=tags).version


def test_first_version_becomes_champion_and_only_improvements_take_the_alias(client, tmp_path):
    v1 = _version(client, tmp_path, 0.90)
    assert _promote(client, "nc", v1, "unet4", 0.90, margin=0.0).alias == CHAMPION
    v2 = _version(client, tmp_path, 0.85)
    worse = _promote(client, "nc", v2, "smp", 0.85, margin=0.0)
    assert worse.alias == CHALLENGER and "does not beat" in worse.reason
    assert client.get_model_version_by_alias("nc", CHAMPION).version == v1
    v3 = _version(client, tmp_path, 0.905)
    small = _promote(client, "nc", v3, "unet4", 0.905, margin=0.01)
    assert small.alias == CHALLENGER, "a gain inside the margin is not enough"
    v4 = _version(client, tmp_path, 0.93)
    better = _promote(client, "nc", v4, "unet4", 0.93, margin=0.01)
    assert better.alias == CHAMPION and better.champion_cv_jaccard == pytest.approx(0.90)
    assert client.get_model_version_by_alias("nc", CHAMPION).version == v4
    assert client.get_model_version_by_alias("nc", CHALLENGER).version == v3


def test_the_served_folder_holds_only_the_served_fold_networks_and_they_are_fingerprinted(tmp_path):
    model_dir = tmp_path / "unet4"
    model_dir.mkdir()
    for k in range(3):
        (model_dir / f"fold{k}.pt").write_bytes(bytes([k]) * 8)
    (model_dir / "model.json").write_text(json.dumps({"name": "unet4", "folds": [f"fold{k}.pt" for k in range(3)]}))
    staged = _stage_members(model_dir, 2, tmp_path / "served")
    assert sorted(p.name for p in staged.iterdir()) == ["fold0.pt", "fold1.pt", "model.json"]
    assert json.loads((staged / "model.json").read_text())["folds"] == ["fold0.pt", "fold1.pt"]
    one, two = fingerprint(model_dir, {"members": 1}), fingerprint(model_dir, {"members": 2})
    (model_dir / "fold2.pt").write_bytes(b"changed")
    assert one != two and fingerprint(model_dir, {"members": 2}) == two, "only served weights count"
    (model_dir / "fold1.pt").write_bytes(b"changed")
    assert fingerprint(model_dir, {"members": 2}) != two


def test_a_champion_that_takes_another_input_gives_way_to_one_clients_can_call(client, tmp_path):
    old = _version(client, tmp_path, 0.97, speaks='[{"type": "tensor", "tensor-spec": {"dtype": "float32"}}]')
    assert _promote(client, "nc", old, "smp", 0.97, margin=0.0).alias == CHAMPION
    new = _version(client, tmp_path, 0.96)
    decision = _promote(client, "nc", new, "smp", 0.96, margin=0.0)
    assert decision.alias == CHAMPION and "another input" in decision.reason
    assert client.get_model_version_by_alias("nc", CHAMPION).version == new
