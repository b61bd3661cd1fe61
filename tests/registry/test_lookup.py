"""`@champion` that nobody holds: a clear sentence with the versions and why none was promoted."""

import mlflow
import pytest
from typer.testing import CliRunner

from ncseg.registry.lookup import ModelLookupError, check_model_uri

from ..conftest import ROOT


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    return uri, client, tmp_path


def _version(client, tmp_path, name, tags):
    source = tmp_path / f"v{len(tags)}-{tags['cv_jaccard_mean']}"
    source.mkdir()
    return client.create_model_version(name, str(source), tags=tags).version


def test_an_unregistered_model_is_named(store):
    uri, _, _ = store
    with pytest.raises(ModelLookupError, match="model 'nc' is not registered"):
        check_model_uri("models:/nc@champion", uri)


def test_no_champion_lists_the_versions_and_why_none_was_promoted(store):
    uri, client, tmp_path = store
    client.create_registered_model("nc")
    reason = "not promoted: does not beat the classical baseline classical-otsu on the same folds"
    _version(client, tmp_path, "nc", {"architecture": "smp", "cv_jaccard_mean": "0.20838", "decision_reason": reason})
    with pytest.raises(ModelLookupError) as err:
        check_model_uri("models:/nc@champion", uri)
    message = str(err.value)
    assert "no version of 'nc' holds @champion" in message
    assert "v1 smp (CV Jaccard 0.20838, no alias): " + reason in message
    assert "models:/nc/<version>" in message


def test_a_held_alias_and_other_uris_pass(store):
    uri, client, tmp_path = store
    client.create_registered_model("nc")
    v = _version(client, tmp_path, "nc", {"architecture": "unet4", "cv_jaccard_mean": "0.95"})
    client.set_registered_model_alias("nc", "champion", v)
    check_model_uri("models:/nc@champion", uri)
    check_model_uri("models:/nc/1", uri)
    check_model_uri(str(tmp_path / "a-model-folder"), "sqlite:////nowhere/mlflow.db")


def test_serve_refuses_a_missing_champion_before_starting_a_server(store, monkeypatch):
    from ncseg.cli import app

    uri, client, _ = store
    client.create_registered_model("ncseg-nc-segmenter")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr("os.execvpe", lambda *a: pytest.fail("the server was started"))
    result = CliRunner().invoke(app, ["serve", "-p", str(ROOT / "params.yaml")])
    assert result.exit_code != 0 and "model 'ncseg-nc-segmenter' has no versions" in result.output.replace("\n", " ")


def test_serve_refuses_weights_changed_after_registration_before_starting_a_server(tmp_path, monkeypatch):
    """The server would load them, hit the model card's sha256 check and die with a traceback."""
    from ncseg.cli import app

    from ..serving.test_model import _model_folder

    weights = tmp_path / "model" / "artifacts" / "weights"
    _model_folder(weights, ["image"], None)
    (weights / "fold0.pt").write_bytes((weights / "fold0.pt").read_bytes() + b"tampered")
    monkeypatch.setattr("os.execvpe", lambda *a: pytest.fail("the server was started"))
    result = CliRunner().invoke(app, ["serve", "-m", str(tmp_path / "model"), "-p", str(ROOT / "params.yaml")])
    assert result.exit_code == 1 and result.output.startswith("error:"), result.output
    assert "its weights are not the ones it was registered with" in result.output
    assert "fold0.pt: differs from the weights" in result.output.replace("\n", "")
