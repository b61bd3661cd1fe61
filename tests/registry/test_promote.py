"""Registering: the aliases the policy gives moved in a real (SQLite) MLflow registry, the served folder, its
fingerprint and the code it covers (the rule itself: tests/registry/test_policy.py)."""

import ast
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from ncseg.records import ModelCard, RecordError, ServingConfig, Summary, WeightFile, sha256
from ncseg.registry.policy import CHALLENGER, CHAMPION, Candidate, merit_gate
from ncseg.registry.promote import _checked_card, _promote, _stage_members, code_digest, fingerprint, interface
from ncseg.serving import sources
from ncseg.serving.sources import PACKAGE, served_sources
from ncseg.training.report import best_model, paired_gains

from ..builders import cv_summary, model_card
from ..conftest import ROOT


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


def test_the_alias_the_policy_gives_is_moved_and_the_decision_tagged(client, tmp_path):
    """The champion's tags reach the policy as the registry holds them (today's interface among them: a version
    that speaks it is compared on its score), and each verdict moves its alias and is tagged on the version."""
    v1 = _version(client, tmp_path, 0.90)
    first = _promote(client, "nc", v1, _cand("unet4", 0.90), margin=0.0)
    assert first.alias == CHAMPION and first.created and first.champion_cv_jaccard is None
    v2 = _version(client, tmp_path, 0.85)
    worse = _promote(client, "nc", v2, _cand("smp", 0.85), margin=0.0)
    assert worse.alias == CHALLENGER and worse.reason.startswith(f"CV Jaccard 0.8500 vs champion v{v1} 0.9000")
    assert client.get_model_version_by_alias("nc", CHAMPION).version == v1
    v3 = _version(client, tmp_path, 0.93)
    better = _promote(client, "nc", v3, _cand("unet4", 0.93), margin=0.01)
    assert better.alias == CHAMPION and better.champion_cv_jaccard == pytest.approx(0.90)
    assert client.get_model_version_by_alias("nc", CHAMPION).version == v3
    assert client.get_model_version_by_alias("nc", CHALLENGER).version == v2
    tags = client.get_model_version("nc", v2).tags
    assert tags["decision"] == CHALLENGER and tags["decision_reason"] == worse.reason


def test_a_junk_first_model_below_the_baseline_is_registered_but_never_champion(client, tmp_path):
    gate = merit_gate("unet4", _summary(unet4=[0.10, 0.21], otsu=[0.92, 0.93]), min_jaccard=None)
    v1 = _version(client, tmp_path, 0.155)
    decision = _promote(client, "nc", v1, _cand("unet4", 0.155), margin=0.0, gate=gate)
    assert decision.alias is None and decision.reason.startswith("not promoted: does not beat")
    assert client.get_model_version("nc", v1).aliases == []
    tags = client.get_model_version("nc", v1).tags
    assert tags["decision"] == "rejected" and "otsu" in tags["decision_reason"]
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("nc", CHAMPION)


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

    from ..conftest import ROOT

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
    """What importing the served model really loads (its imports are all at module level, so importing it loads
    everything it will run) is what the import walk found."""
    probe = (
        "import sys, ncseg.serving.model;"
        "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) "
        "if m.__name__.startswith('ncseg.') and getattr(m, '__file__', None)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    loaded = {Path(file).resolve() for file in out}
    served = set(served_sources())
    assert loaded <= served, f"run by the served model but not fingerprinted: {sorted(map(str, loaded - served))}"
    assert served - loaded == {PACKAGE / "serving" / "model_code.py"}, "only MLflow runs model_code, as a file"


def test_the_served_code_imports_ncseg_modules_only_at_module_level():
    """An ncseg import inside a function would run in the served model unseen by the walk (and the fingerprint)."""
    for file in served_sources():
        tree = ast.parse(file.read_text())
        top = {id(node) for node in sources.module_level(tree.body)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
                assert not [n for n in names if n.startswith("ncseg") or n == "."], (
                    f"{file.relative_to(PACKAGE)}:{node.lineno} imports {names} inside a function or TYPE_CHECKING"
                )


def test_the_import_walk_follows_packages_relative_imports_and_skips_type_checking(tmp_path, monkeypatch):
    package = tmp_path / "ncseg"
    for name, text in {
        "root.py": "from ncseg.a import b\nfrom ncseg.c.d import thing\nimport numpy\n",
        "a/__init__.py": "",
        "a/b.py": "from . import e\ntry:\n    from ..f import g\nexcept ImportError:\n    pass\n",
        "a/e.py": "",
        "c/__init__.py": "from ncseg.c.d import thing\n",
        "c/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ncseg import unseen\nthing = 1\n",
        "f.py": "def g():\n    import ncseg.late\n",
        "unseen.py": "",
        "late.py": "",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    monkeypatch.setattr(sources, "PACKAGE", package)
    monkeypatch.setattr(sources, "ROOTS", ("ncseg.root",))
    found = [p.relative_to(package).as_posix() for p in sources.served_sources()]
    assert found == ["a/__init__.py", "a/b.py", "a/e.py", "c/__init__.py", "c/d.py", "f.py", "root.py"]


def test_the_register_stage_depends_on_the_served_code_and_the_registry_code_and_nothing_else():
    """DVC reruns `register` when served code changes (else a code change ships only at the next retraining) and
    not when code register never runs changes (else every edit of training code re-registers)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = [ROOT / d for d in stages["register"]["deps"] if d.startswith("src/ncseg/")]
    assert all(d.exists() for d in deps), [str(d) for d in deps if not d.exists()]
    registry = sorted((PACKAGE / "registry").glob("*.py"))
    needed = {*served_sources(), *registry, PACKAGE / "serving" / "sources.py"}  # sources: what is fingerprinted
    for file in sorted(needed):
        assert any(d == file or d in file.parents for d in deps), f"no register dep covers {file.relative_to(ROOT)}"
    for dep in deps:
        files = sorted(dep.rglob("*.py")) if dep.is_dir() else [dep]
        extra = [f.relative_to(ROOT).as_posix() for f in files if f not in needed]
        assert not extra, f"register dep {dep.relative_to(ROOT)} covers code register does not run: {extra}"


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


def test_a_candidate_of_other_classes_than_the_champions_is_refused_before_it_is_logged(client, tmp_path):
    from ncseg.labels import LabelClass, LabelSet
    from ncseg.registry.promote import RegistryRefusedError, _same_classes, classes_tag

    binary = _card(tmp_path / "unet4", 1)
    three = binary.model_copy(
        update={
            "labels": LabelSet(
                (*LabelSet.binary("support").classes, LabelClass(name="pt", kind="particles", colour="#ff0000"))
            )
        }
    )
    _same_classes(client, "nc", three)  # no champion yet: anything may become one
    client.set_registered_model_alias("nc", CHAMPION, _version(client, tmp_path, 0.9))  # registered before the tag
    _same_classes(client, "nc", binary)
    with pytest.raises(RegistryRefusedError, match="answers the classes background,nanocrystal, but unet4 answers"):
        _same_classes(client, "nc", three)
    tagged = client.create_model_version("nc", str(tmp_path), tags={"labels": classes_tag(three.labels)}).version
    client.set_registered_model_alias("nc", CHAMPION, tagged)
    _same_classes(client, "nc", three)
