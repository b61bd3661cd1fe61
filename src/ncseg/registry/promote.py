"""Register the best architecture's fold networks in the MLflow model registry and move aliases on merit.

- The candidate is the trainable model with the best mean CV Jaccard (metrics/summary.json).
- It serves the first `register.members` fold networks: one is exactly what each CV fold measured and the
  fastest; more make a mean-probability ensemble (typically a little better, not measured by CV, N× slower).
- A version is identified by a fingerprint of its weights, threshold, serving settings and the ncseg code
  that travels with it: registering the same inputs again finds that version instead of creating a new one.
- Alias `champion` moves only when the candidate's CV Jaccard beats the champion's by `register.margin`, or
  when the champion speaks another interface (input schema) than the current code: clients and `ncseg predict`
  call the champion, so a champion they cannot call is no champion. Otherwise the candidate becomes
  `challenger`. (Aliases replace the deprecated registry stages.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ncseg.config import Params
from ncseg.io.tables import write_json

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION, CHALLENGER = "champion", "challenger"
PACKAGE = Path(__file__).resolve().parents[1]  # the ncseg package, which travels with the model


@dataclass(frozen=True)
class Decision:
    model_name: str
    version: str
    alias: str
    created: bool
    architecture: str
    cv_jaccard: float
    champion_cv_jaccard: float | None
    reason: str


def serving_config(card: dict, params: Params) -> dict:
    return {
        "architecture": card["name"],
        "threshold": card["threshold"],
        "inference": params.inference.tiling(),
        "normalization": card["normalization"],
        "intensity_window": card["intensity_window"],
        "members": params.registry.members,
        "max_pixels": params.registry.max_pixels,
    }


def fingerprint(model_dir: Path, config: dict) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    card = json.loads((model_dir / "model.json").read_text())
    for name in card["folds"][: config["members"]]:
        digest.update((model_dir / name).read_bytes())
    for source in sorted(PACKAGE.rglob("*.py")):  # how the weights are run is part of the model
        digest.update(source.relative_to(PACKAGE).as_posix().encode() + source.read_bytes())
    return digest.hexdigest()[:32]


def _stage_members(model_dir: Path, members: int, out: Path) -> Path:
    """A copy of the model folder holding only the served fold networks, with a model card that lists them."""
    card = json.loads((model_dir / "model.json").read_text())
    card["folds"] = card["folds"][:members]
    out.mkdir()
    for name in card["folds"]:
        shutil.copy2(model_dir / name, out / name)
    (out / "model.json").write_text(json.dumps(card, indent=2))
    return out


def _log_pyfunc(model_dir: Path, config: dict) -> str:
    """Log the served fold networks as a pyfunc model in the active run; returns its model URI."""
    import mlflow
    import numpy as np
    import torch

    from ncseg.registry.pyfunc import NcSegmenter, encode_request, signature

    with tempfile.TemporaryDirectory() as tmp:
        serving = Path(tmp) / "serving.json"
        serving.write_text(json.dumps(config, indent=2))
        weights = _stage_members(model_dir, config["members"], Path(tmp) / "weights")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=NcSegmenter(),
            artifacts={"weights": str(weights), "serving": str(serving)},
            code_paths=[str(PACKAGE)],
            signature=signature(config["threshold"]),
            input_example=encode_request([np.zeros((64, 64), np.uint16)]),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "segmentation-models-pytorch",
                "numpy",
                "scikit-image",
                "pydantic",
                "pyyaml",
            ],
        )
    return info.model_uri


def _find_version(client: MlflowClient, name: str, fp: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name='{name}'")
    return next((v for v in versions if v.tags.get("fingerprint") == fp), None)


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register_best(params: Params, root: Path) -> Decision:
    import mlflow

    from ncseg import tracking

    summary = json.loads((params.paths.metrics / "summary.json").read_text())
    best = summary["best"]
    result = summary["models"][best]
    model_dir = params.paths.models / best
    card = json.loads((model_dir / "model.json").read_text())
    config = serving_config(card, params)
    fp = fingerprint(model_dir, config)
    name = params.registry.model_name
    tracking.setup(params, root)
    client = mlflow.MlflowClient()
    existing = _find_version(client, name, fp) if client.search_registered_models(f"name='{name}'") else None
    if existing is not None:
        alias = next(iter(existing.aliases), "none")
        return _record(
            params,
            Decision(
                name,
                existing.version,
                alias,
                False,
                best,
                result["jaccard_mean"],
                None,
                f"unchanged inputs: version {existing.version} already registered",
            ),
        )
    with tracking.parent_run("register", params, root, kind="register"):
        uri = _log_pyfunc(model_dir, config)
        tags = {
            **tracking.run_tags(best, root),
            "architecture": best,
            "fingerprint": fp,
            "interface": interface(),
            "cv_jaccard_mean": f"{result['jaccard_mean']:.5f}",
            "cv_jaccard_std": f"{result['jaccard_std']:.5f}",
            "threshold": f"{card['threshold']}",
        }
        version = mlflow.register_model(uri, name, tags=tags)
        description = _description(best, result, card, config["members"])
        client.update_model_version(name, version.version, description=description)
        decision = _promote(client, name, version.version, best, result["jaccard_mean"], params.registry.margin)
        mlflow.set_tags({"decision": decision.alias, "decision_reason": decision.reason})
    return _record(params, decision)


def interface() -> str:
    """What a caller sends the served model: its input schema, recorded as a tag on every version."""
    from ncseg.registry.pyfunc import signature

    return signature(0.5).inputs.to_json()


def _promote(client: MlflowClient, name: str, version: str, arch: str, cv_jaccard: float, margin: float) -> Decision:
    champion = _champion(client, name)
    best_so_far = float(champion.tags["cv_jaccard_mean"]) if champion is not None else None
    if champion is None:
        alias, reason = CHAMPION, "first version: no champion yet"
    elif champion.tags.get("interface") != interface():
        alias, reason = CHAMPION, f"champion v{champion.version} takes another input than today's clients send"
    elif cv_jaccard > best_so_far + margin:
        alias, reason = CHAMPION, f"CV Jaccard {cv_jaccard:.4f} beats champion v{champion.version} ({best_so_far:.4f})"
    else:
        alias = CHALLENGER
        reason = (
            f"CV Jaccard {cv_jaccard:.4f} does not beat champion v{champion.version} ({best_so_far:.4f}) "
            f"by the margin {margin}"
        )
    client.set_registered_model_alias(name, alias, version)
    return Decision(name, version, alias, True, arch, cv_jaccard, best_so_far, reason)


def _description(arch: str, result: dict, card: dict, members: int) -> str:
    return (
        f"{arch}: {members} of its {len(card['folds'])} CV fold networks (mean probability), thresholded at "
        f"{card['threshold']:.2f} (chosen on out-of-fold predictions). CV Jaccard "
        f"{result['jaccard_mean']:.4f} ± {result['jaccard_std']:.4f}. Input: column 'image', a base64 TIFF/PNG "
        "per row; output: column 'tiff', a base64 TIFF (0/255 mask or float32 probability); params: threshold, "
        "output=mask|probability."
    )


def _record(params: Params, decision: Decision) -> Decision:
    write_json(params.paths.metrics / "registry.json", asdict(decision))
    return decision
