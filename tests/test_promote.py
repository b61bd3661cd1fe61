"""Aliases move only on merit: checked against a real (SQLite) MLflow registry."""

import subprocess
import sys

import mlflow
import pytest

from ncseg.records import ModelCard, RecordError, ServingConfig, Summary, WeightFile, sha256
from ncseg.registry.promote import (
    CHALLENGER,
    CHAMPION,
    PACKAGE,
    SERVED_CODE,
    Candidate,
    _checked_card,
    _promote,
    _stage_members,
    code_digest,
    fingerprint,
    interface,
    merit_gate,
)
from ncseg.training.report import best_model, paired_gains

from .builders import cv_summary, model_card


@pytest.fixture
def client(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("nc")
    return client


def _version(client, tmp_path, jaccard, speaks=None, noise=0.0, data="d1"):
    source = tmp_path / f"model-{jaccard}"
    source.mkdir()
    tags = {"cv_jaccard_mean": str(jaccard), "interface": speaks or interface(), "cv_noise": str(noise)}
    return client.create_model_version("nc", str(source), tags=tags | {"data_md5": data}).version


def _cand(architecture, jaccard, noise=0.0, data="d1"):
    return Candidate(architecture, jaccard, noise, data)


def _summary(**per_fold: list[float]) -> Summary:
    results = {
        name: cv_summary(name, "classical" if name == "otsu" else "unet4", folds) for name, folds in per_fold.items()
    }
    return Summary(best=best_model(results), models=results, paired_gains=tuple(paired_gains(results)))


def test_first_version_becomes_champion_and_only_improvements_take_the_alias(client, tmp_path):
    v1 = _version(client, tmp_path, 0.90)
    assert _promote(client, "nc", v1, _cand("unet4", 0.90), margin=0.0).alias == CHAMPION
    v2 = _version(client, tmp_path, 0.85)
    worse = _promote(client, "nc", v2, _cand("smp", 0.85), margin=0.0)
    assert worse.alias == CHALLENGER and "not beyond" in worse.reason
    assert client.get_model_version_by_alias("nc", CHAMPION).version == v1
    v3 = _version(client, tmp_path, 0.905)
    small = _promote(client, "nc", v3, _cand("unet4", 0.905), margin=0.01)
    assert small.alias == CHALLENGER, "a gain inside the margin is not enough"
    v4 = _version(client, tmp_path, 0.93)
    better = _promote(client, "nc", v4, _cand("unet4", 0.93), margin=0.01)
    assert better.alias == CHAMPION and better.champion_cv_jaccard == pytest.approx(0.90)
    assert client.get_model_version_by_alias("nc", CHAMPION).version == v4
    assert client.get_model_version_by_alias("nc", CHALLENGER).version == v3


def test_a_junk_first_model_below_the_baseline_is_registered_but_never_champion(client, tmp_path):
    summary = _summary(unet4=[0.10, 0.21], otsu=[0.92, 0.93])
    gate = merit_gate("unet4", summary, min_jaccard=None)
    assert gate is not None and "does not beat the classical baseline otsu" in gate
    v1 = _version(client, tmp_path, 0.155)
    decision = _promote(client, "nc", v1, _cand("unet4", 0.155), margin=0.0, gate=gate)
    assert decision.alias is None and decision.reason.startswith("not promoted: does not beat")
    assert client.get_model_version("nc", v1).aliases == []
    tags = client.get_model_version("nc", v1).tags
    assert tags["decision"] == "rejected" and "otsu" in tags["decision_reason"]
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("nc", CHAMPION)


def test_a_good_first_model_that_beats_the_baseline_on_the_same_folds_is_champion(client, tmp_path):
    summary = _summary(unet4=[0.95, 0.94], otsu=[0.92, 0.93])
    assert merit_gate("unet4", summary, min_jaccard=None) is None
    v1 = _version(client, tmp_path, 0.945)
    decision = _promote(client, "nc", v1, _cand("unet4", 0.945), margin=0.0, gate=None)
    assert decision.alias == CHAMPION
    assert client.get_model_version("nc", v1).tags["decision"] == CHAMPION


def test_the_floor_and_a_missing_baseline_also_hold_the_gate():
    good = _summary(unet4=[0.95, 0.94], otsu=[0.92, 0.93])
    assert "below register.min_jaccard 0.96" in merit_gate("unet4", good, min_jaccard=0.96)
    alone = _summary(unet4=[0.95, 0.94])
    assert "no classical baseline" in merit_gate("unet4", alone, min_jaccard=None)
    assert merit_gate("unet4", alone, min_jaccard=0.9) is None


def _card(model_dir, n, repeats=1):
    model_dir.mkdir(exist_ok=True)
    files = []
    for k in range(n):
        (model_dir / f"fold{k}.pt").write_bytes(bytes([k]) * 8)
        files.append(WeightFile(file=f"fold{k}.pt", sha256=sha256(model_dir / f"fold{k}.pt")))
    card = model_card(files, repeats)
    card.save(model_dir / ModelCard.FILE)
    return card


def test_a_card_with_repeats_matches_its_summary_and_a_stale_one_is_refused(tmp_path):
    """R repeats x K folds: the card lists R*K networks, the summary K folds and R repeats (make real-data)."""
    card = _card(tmp_path / "unet4", 6, repeats=3)
    summary = cv_summary("unet4", "unet4", [0.9] * 6).model_copy(
        update={"n_folds": 2, "repeats": 3, "jaccard_mean": card.cv_jaccard_mean}
    )
    assert _checked_card(tmp_path / "unet4", summary, members=1) == card
    stale = summary.model_copy(update={"repeats": 1, "n_folds": 6})  # trained again with R = 1 since
    with pytest.raises(RecordError, match=r"6 networks \(3 repeats\), but the CV summary says 0.9000 with 6 \(1 x 6"):
        _checked_card(tmp_path / "unet4", stale, members=1)


def _serving(members: int) -> ServingConfig:
    return ServingConfig(
        architecture="unet4",
        threshold=0.5,
        inference={"tile": 256, "context": 16, "batch_tiles": 4, "precision": "bf16"},
        normalization=("image",),
        intensity_window=None,
        tta="none",
        members=members,
        max_pixels=4096**2,
        max_rows=16,
        max_request_pixels=4 * 4096**2,
    )


def test_the_served_folder_holds_only_the_served_fold_networks_and_they_are_fingerprinted(tmp_path):
    card = _card(tmp_path / "unet4", 3)
    staged = _stage_members(tmp_path / "unet4", card, 2, tmp_path / "served")
    assert sorted(p.name for p in staged.iterdir()) == ["fold0.pt", "fold1.pt", "model.json"]
    assert [w.file for w in ModelCard.load(staged / "model.json").folds] == ["fold0.pt", "fold1.pt"]
    one, two = fingerprint(card, _serving(members=1)), fingerprint(card, _serving(members=2))
    assert one != two
    retrained = card.model_copy(update={"folds": (*card.folds[:2], WeightFile(file="fold2.pt", sha256="0" * 64))})
    assert fingerprint(retrained, _serving(members=2)) == two, "only served weights count"
    changed = card.model_copy(update={"folds": (card.folds[0], WeightFile(file="fold1.pt", sha256="1" * 64))})
    assert fingerprint(changed, _serving(members=2)) != two


def test_the_served_model_carries_the_particle_settings_of_the_study_that_registered_it(tmp_path):
    """`ncseg predict` with a model folder outside any project measures particles as the study did (no params.yaml
    needed); a config written before they travelled with it still loads, without them."""
    from ncseg.config import load_params
    from ncseg.registry.promote import serving_config

    from .conftest import ROOT

    params = load_params(ROOT / "params.yaml", ["particles.min_area_nm2=30", "particles.min_distance_nm=5"])
    config = serving_config(_card(tmp_path / "unet4", 1), params)
    assert config.particles == params.particles
    assert ServingConfig.model_validate_json(config.model_dump_json()).particles.min_area_nm2 == 30
    older = config.model_dump(mode="json")
    del older["particles"]
    assert ServingConfig.model_validate(older).particles is None


def test_weights_that_are_not_the_scored_ones_are_refused(tmp_path):
    card = _card(tmp_path / "unet4", 2)
    (tmp_path / "unet4" / "fold1.pt").write_bytes(b"half-trained")
    card.verify(tmp_path / "unet4", members=1)  # the served member is intact
    with pytest.raises(RecordError, match=r"fold1\.pt: differs from the weights"):
        card.verify(tmp_path / "unet4")
    (tmp_path / "unet4" / "fold1.pt").unlink()
    with pytest.raises(RecordError, match=r"fold1\.pt: listed in .* but missing"):
        card.verify(tmp_path / "unet4")


def test_docstrings_and_comments_do_not_change_the_code_digest():
    source = 'def f(x):\n    """Why."""\n    return x + 1  # one\n'
    assert code_digest(source) == code_digest("def f(x):\n    return x+1\n")
    assert code_digest(source) != code_digest("def f(x):\n    return x + 2\n")


def test_the_served_model_imports_only_code_the_fingerprint_covers():
    probe = (
        "import sys, ncseg.registry.pyfunc, ncseg.models.zoo, ncseg.inference.tiling;"
        "print('\\n'.join(m for m in sys.modules if m.startswith('ncseg.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    covered = {p.removesuffix(".py").replace("/", ".") for p in SERVED_CODE}
    for module in out:
        relative = module.removeprefix("ncseg.")
        assert any(relative == c or relative.startswith(f"{c}.") for c in covered) or (
            (PACKAGE / relative.replace(".", "/") / "__init__.py").exists()
        ), f"{module} runs in the served model but is not in SERVED_CODE"


def test_a_champion_that_takes_another_input_gives_way_to_one_clients_can_call(client, tmp_path):
    old = _version(client, tmp_path, 0.97, speaks='[{"type": "tensor", "tensor-spec": {"dtype": "float32"}}]')
    assert _promote(client, "nc", old, _cand("smp", 0.97), margin=0.0).alias == CHAMPION
    new = _version(client, tmp_path, 0.96)
    decision = _promote(client, "nc", new, _cand("smp", 0.96), margin=0.0)
    assert decision.alias == CHAMPION and "another input" in decision.reason
    assert client.get_model_version_by_alias("nc", CHAMPION).version == new


def test_an_unchanged_champion_that_no_longer_clears_the_gate_is_demoted(client, tmp_path):
    from ncseg.registry.promote import _unchanged

    v1 = _version(client, tmp_path, 0.93)
    _promote(client, "nc", v1, _cand("unet4", 0.93), margin=0.0)
    existing = client.get_model_version("nc", v1)
    kept = _unchanged(client, existing, "unet4", 0.93, gate=None)
    assert kept.alias == CHAMPION and not kept.created
    demoted = _unchanged(client, existing, "unet4", 0.93, gate="CV Jaccard 0.9300 is below register.min_jaccard 0.95")
    assert demoted.alias is None and "holds no alias" in demoted.reason
    assert client.get_model_version("nc", v1).tags["decision_reason"].startswith("demoted: CV Jaccard")
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("nc", CHAMPION)


def test_a_gain_inside_the_measured_run_to_run_noise_leaves_the_champion_in_place(client, tmp_path):
    v1 = _version(client, tmp_path, 0.910, noise=0.004)
    assert _promote(client, "nc", v1, _cand("unet4", 0.910, noise=0.004), margin=0.0).alias == CHAMPION
    v2 = _version(client, tmp_path, 0.913, noise=0.002)
    lucky = _promote(client, "nc", v2, _cand("unet4", 0.913, noise=0.002), margin=0.0)
    assert lucky.alias == CHALLENGER, "+0.003 is inside the champion's measured noise (0.004)"
    assert "not beyond the run-to-run noise 0.0040" in lucky.reason
    v3 = _version(client, tmp_path, 0.920, noise=0.002)
    assert _promote(client, "nc", v3, _cand("unet4", 0.920, noise=0.002), margin=0.0).alias == CHAMPION


def test_a_champion_measured_on_other_data_gives_way(client, tmp_path):
    v1 = _version(client, tmp_path, 0.95, data="old-data")
    _promote(client, "nc", v1, _cand("unet4", 0.95, data="old-data"), margin=0.0)
    v2 = _version(client, tmp_path, 0.93, data="new-data")
    decision = _promote(client, "nc", v2, _cand("unet4", 0.93, data="new-data"), margin=0.0)
    assert decision.alias == CHAMPION and "measured on other data" in decision.reason
