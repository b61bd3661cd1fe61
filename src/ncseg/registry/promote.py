"""Register the best architecture's fold networks in the MLflow model registry and move aliases on merit.

- The candidate is the trainable model with the best mean CV Jaccard (metrics/summary.json).
- It serves the first `register.members` fold networks: one is exactly what each CV fold measured and the
  fastest; more make a mean-probability ensemble (typically a little better, not measured by CV, N× slower).
- A version is identified by a fingerprint of its weights, threshold, serving settings and the ncseg code
  that travels with it: registering the same inputs again finds that version instead of creating a new one.
- Every version is registered (so it can be inspected), but only one that passes the merit gate can become
  `champion`: it must beat each classical baseline on the same folds (mean fold-paired Jaccard gain > 0) and
  reach `register.min_jaccard` where set. This holds for the first version too: an untrained network from a
  one-epoch experiment is registered without an alias, with the reason tagged, and serves nobody.
- Past the gate, alias `champion` moves only when the candidate's CV Jaccard beats the champion's by
  `register.margin`, or when the champion speaks another interface (input schema) than the current code:
  clients and `ncseg predict` call the champion, so a champion they cannot call is no champion. Otherwise the
  candidate becomes `challenger`. (Aliases replace the deprecated registry stages.)

The rule itself is registry.policy (no MLflow); this module reads the registry, packs and registers the model, and
moves the aliases the rule gives.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ncseg.config import Params
from ncseg.io.atomic import folder_lock
from ncseg.labels import LabelSet
from ncseg.records import CVSummary, ModelCard, RecordError, RegistryDecision, ServingConfig, Summary, score_label
from ncseg.registry.policy import CHAMPION, REJECTED, Candidate, champion_score, merit_gate, verdict
from ncseg.serving.sources import served_sources

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

PACKAGE = Path(__file__).resolve().parents[1]  # the ncseg package, which travels with the model


def serving_config(card: ModelCard, params: Params) -> ServingConfig:
    """The served model's settings beside its weights (validated here, at register time, not when a server loads
    them)."""
    operating = card.operating(params.registry.members)  # a K-class model's: no threshold (the argmax)
    return ServingConfig(
        architecture=card.name,
        threshold=operating.threshold,
        temperature=operating.temperature,
        inference=params.inference.tiling() | {"backend": params.inference.backend},
        normalization=card.normalization,
        intensity_window=card.intensity_window,
        tta=card.tta,  # what CV measured and tuned the threshold with, not today's params
        members=params.registry.members,
        max_pixels=params.registry.max_pixels,
        max_rows=params.registry.max_rows,
        max_request_pixels=params.registry.max_request_pixels,
        domain=card.domain,
        particles=params.particles,
        labels=card.labels,
    )


def code_digest(source: str) -> bytes:
    """Python source without docstrings, comments and formatting: only what runs changes the fingerprint."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def fingerprint(card: ModelCard, config: ServingConfig) -> str:
    """Served weights (by the hashes the model card recorded), serving settings and the code that runs them."""
    digest = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    for weights in card.folds[: config.members]:
        digest.update(weights.sha256.encode())
    for source in served_sources():
        digest.update(source.relative_to(PACKAGE).as_posix().encode() + code_digest(source.read_text()))
    return digest.hexdigest()[:32]


def _stage_members(model_dir: Path, card: ModelCard, members: int, out: Path) -> Path:
    """A copy of the model folder holding only the served fold networks, with a model card that lists them; the
    copies are checked against the card, so what is logged is what was scored."""
    served = card.model_copy(update={"folds": card.folds[:members]})
    out.mkdir()
    for weights in served.folds:
        shutil.copy2(model_dir / weights.file, out / weights.file)
    served.save(out / ModelCard.FILE)
    served.verify(out)
    return out


def _log_pyfunc(model_dir: Path, card: ModelCard, config: ServingConfig) -> str:
    """Log the served fold networks as a pyfunc model in the active run; returns its model URI.

    Logged from code (MODEL_CODE), not pickled: loading the model runs that file and the ncseg package logged with
    it (code_paths), and reads the weights as state dicts and the settings as JSON.
    """
    import mlflow
    import numpy as np
    import torch

    from ncseg.serving.model import MODEL_CODE
    from ncseg.serving.protocol import encode_request, signature

    with tempfile.TemporaryDirectory() as tmp:
        serving = Path(tmp) / ServingConfig.FILE
        config.save(serving)
        weights = _stage_members(model_dir, card, config.members, Path(tmp) / "weights")
        info = mlflow.pyfunc.log_model(
            name=config.architecture,  # the logged model is named after what it is
            python_model=str(MODEL_CODE),
            artifacts={"weights": str(weights), "serving": str(serving)},
            code_paths=[str(PACKAGE)],
            signature=signature(config.threshold, config.tta),
            input_example=encode_request([np.zeros((64, 64), np.uint16)]),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "segmentation-models-pytorch",
                "numpy",
                "scikit-image",
                "pydantic",
                "pyyaml",
                "onnx",
                "onnxruntime",
            ],
        )
    return info.model_uri


def _find_version(client: MlflowClient, name: str, fp: str) -> ModelVersion | None:
    """The version registered from exactly these inputs, with its aliases (search results carry none)."""
    versions = client.search_model_versions(f"name='{name}'")
    found = next((v for v in versions if v.tags.get("fingerprint") == fp), None)
    return client.get_model_version(name, found.version) if found is not None else None


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


class RegistryRefusedError(RuntimeError):
    """The MLflow registry (or its store) refused a call, or the model is one the served model cannot answer for;
    the message says which in one line."""


def register_best(params: Params, root: Path) -> RegistryDecision:
    """The study's best model into the registry, promoted on merit (registry.policy); metrics/registry.json says
    what was decided and why."""
    from mlflow.exceptions import MlflowException

    summary = Summary.load(params.paths.metrics / Summary.FILE)
    best = summary.best
    model_dir = params.paths.models / best
    with folder_lock(model_dir):  # no `ncseg train` may swap the folder between its check and its upload
        try:
            decision = _register(params, root, summary, model_dir)
        except MlflowException as err:
            raise RegistryRefusedError(f"the MLflow registry refused: {str(err).splitlines()[0]}") from err
        return _record(params, decision)


def _register(params: Params, root: Path, summary: Summary, model_dir: Path) -> RegistryDecision:
    import mlflow

    from ncseg.tracking import runs, store

    best, result, score = summary.best, summary.models[summary.best], params.registry.score
    if summary.score != score:
        raise RecordError(
            f"{params.paths.metrics / Summary.FILE}: ranked by {score_label(summary.score)}, but register.score is "
            f"{score_label(score)}: rerun `ncseg evaluate` (or `dvc repro`)"
        )
    card = _checked_card(model_dir, result, params.registry.members)
    config = serving_config(card, params)
    fp = fingerprint(card, config)
    name = params.registry.model_name
    store_uri = runs.setup(params, root)
    client = mlflow.MlflowClient()
    gate = merit_gate(best, summary, params.registry.min_jaccard)
    with store.registry_lock(store_uri):  # from reading the champion to moving the alias: one process at a time
        existing = _find_version(client, name, fp) if client.search_registered_models(f"name='{name}'") else None
        if existing is not None:
            return _unchanged(client, existing, best, result.score_mean(score), gate)
        _same_classes(client, name, card)
        with runs.parent_run("register", params, root, kind="register", model=best):
            uri = _log_pyfunc(model_dir, card, config)
            version = mlflow.register_model(uri, name, tags=_version_tags(best, fp, result, card, root, score))
            _describe(client, name, version.version, best, result, card, config.members, score)
            data = runs.data_hash(root)
            candidate = Candidate(best, result.score_mean(score), result.score_noise(score), data, score)
            decision = _promote(client, name, version.version, candidate, params.registry.margin, gate)
            mlflow.set_tags({"decision": decision.alias or REJECTED, "decision_reason": decision.reason})
    return decision


def _checked_card(model_dir: Path, result: CVSummary, members: int) -> ModelCard:
    """The model card, if it and the weights it lists are the ones the CV summary scored; else a clear error."""
    card = ModelCard.load(model_dir / ModelCard.FILE)
    networks = result.repeats * result.n_folds  # one per (repeat, fold)
    if card.cv_jaccard_mean != result.jaccard_mean or (len(card.folds), card.repeats) != (networks, result.repeats):
        raise RecordError(
            f"{model_dir / ModelCard.FILE}: scored CV Jaccard {card.cv_jaccard_mean:.4f} with {len(card.folds)} "
            f"networks ({card.repeats} repeats), but the CV summary says {result.jaccard_mean:.4f} with {networks} "
            f"({result.repeats} x {result.n_folds} folds): the model folder and the metrics come from different "
            f"runs; rerun `dvc repro` (or `ncseg train {card.name}`)"
        )
    card.verify(model_dir, members)
    return card


def classes_tag(labels: LabelSet) -> str:
    """The classes a version answers, as its `labels` tag: a version registered before the tag answered binary NCs."""
    return ",".join(labels.names)


def _same_classes(client: MlflowClient, name: str, card: ModelCard) -> None:
    """A candidate must answer the classes the champion answers: its score is measured on them, and the clients
    calling the champion read them."""
    champion = _champion(client, name)
    if champion is None:
        return
    held = champion.tags.get("labels", classes_tag(LabelSet.binary()))
    if held != classes_tag(card.labels):
        raise RegistryRefusedError(
            f"registered model {name!r}: its champion v{champion.version} answers the classes {held}, but "
            f"{card.name} answers {classes_tag(card.labels)}; their scores measure different things, so register it "
            "under another registry.model_name"
        )


def _version_tags(
    arch: str, fp: str, result: CVSummary, card: ModelCard, root: Path, score: str | None
) -> dict[str, str]:
    from ncseg.tracking import runs

    return {
        **runs.run_tags(arch, root),
        "architecture": arch,
        "fingerprint": fp,
        "interface": interface(),
        "cv_jaccard_mean": f"{result.jaccard_mean:.5f}",
        "cv_jaccard_std": f"{result.jaccard_std:.5f}",
        "cv_score": score or "",  # what the next version is compared on (register.score; "" = the Jaccard)
        "cv_score_mean": f"{result.score_mean(score):.5f}",
        "cv_noise": f"{result.score_noise(score):.5f}",
        "cv_repeats": str(result.repeats),
        "threshold": f"{card.threshold}",
        "labels": classes_tag(card.labels),
        "cv_run_id": card.cv_run_id,
    }


def _unchanged(
    client: MlflowClient, existing: ModelVersion, arch: str, cv_jaccard: float, gate: str | None
) -> RegistryDecision:
    """The version registered from these inputs before. It keeps its alias unless the gate now fails (a retuned
    baseline, a new register.min_jaccard): a champion that no longer clears it is demoted."""
    if gate is not None and CHAMPION in existing.aliases:
        client.delete_registered_model_alias(existing.name, CHAMPION)
        client.set_model_version_tag(existing.name, existing.version, "decision", REJECTED)
        client.set_model_version_tag(existing.name, existing.version, "decision_reason", f"demoted: {gate}")
        existing = client.get_model_version(existing.name, existing.version)
    alias = CHAMPION if CHAMPION in existing.aliases else next(iter(existing.aliases), None)
    held = f"holds @{alias}" if alias else "holds no alias"
    return RegistryDecision(
        model_name=existing.name,
        version=str(existing.version),
        alias=alias,
        created=False,
        architecture=arch,
        cv_jaccard=cv_jaccard,
        champion_cv_jaccard=None,
        score=existing.tags.get("cv_score") or None,
        reason=f"unchanged inputs: version {existing.version} already registered and {held} "
        f"({existing.tags.get('decision_reason', 'no recorded decision')})",
    )


def interface() -> str:
    """What a caller sends the served model: its input schema, recorded as a tag on every version."""
    from ncseg.serving.protocol import signature

    return signature(0.5, "none").inputs.to_json()


def _promote(
    client: MlflowClient, name: str, version: str, candidate: Candidate, margin: float, gate: str | None = None
) -> RegistryDecision:
    """Move an alias to the new version on merit; `gate`, when set, is why it can never be champion."""
    champion = _champion(client, name)
    best_so_far = champion_score(champion.tags) if champion is not None else None
    alias: str | None
    if gate is not None:
        alias, reason = None, f"not promoted: {gate}"
    else:
        tags, number = (None, None) if champion is None else (champion.tags, champion.version)
        alias, reason = verdict(tags, number, candidate, margin, interface())
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "decision", alias or REJECTED)
    client.set_model_version_tag(name, version, "decision_reason", reason)
    return RegistryDecision(
        model_name=name,
        version=str(version),
        alias=alias,
        created=True,
        architecture=candidate.architecture,
        cv_jaccard=candidate.cv_jaccard,
        champion_cv_jaccard=best_so_far,
        score=candidate.score,
        reason=reason,
    )


def _describe(
    client: MlflowClient,
    name: str,
    version: str,
    arch: str,
    result: CVSummary,
    card: ModelCard,
    members: int,
    score: str | None,
) -> None:
    """Descriptions a user reads in the registry UI: the model's purpose and rule, and what this version is."""
    client.update_registered_model(name, description=MODEL_DESCRIPTION)
    client.set_registered_model_tag(name, "task", f"segmentation of {classes_tag(card.labels)} in HAADF-STEM images")
    client.set_registered_model_tag(name, "promotion_rule", "beats the classical baseline, then the champion")
    client.update_model_version(
        name,
        version,
        description=(
            f"{arch}: {members} of its {len(card.folds)} CV fold networks (mean probability), {_rule(card)}. "
            f"CV Jaccard {result.jaccard_mean:.4f} ± {result.jaccard_std:.4f} (CV run {card.cv_run_id})"
            + (f"; ranked by {score_label(score)} {result.score_mean(score):.4f}" if score else "")
            + ". Input: "
            "column 'image', a base64 TIFF/PNG per row; output: column 'tiff', a base64 TIFF (0/255 foreground "
            "mask, uint8 class map or float32 probability); params: output=mask|classes|probability|uncertainty"
            f"{', threshold' if card.labels.is_binary else ''}."
        ),
    )


def _rule(card: ModelCard) -> str:
    if card.labels.is_binary:
        return f"thresholded at {card.threshold:.2f} (chosen on out-of-fold predictions)"
    names = ", ".join(card.labels.names)
    return f"each pixel the class of highest mean probability ({names}; CV Jaccard: mean over foreground classes)"


MODEL_DESCRIPTION = (
    "Segments HAADF-STEM micrographs into the classes of its study (the `task` tag; a version's `labels` tag): "
    "a TIFF/PNG in, the 0/255 foreground mask, the class map or the probability map out. Each version is one "
    "cross-validated architecture of the ncseg study, scored by the study's register.score (its `cv_score` tag: "
    "empty = the Jaccard). @champion is the version to use: it beat the classical baseline on the same folds and "
    "every earlier champion by register.margin; @challenger passed that gate but not the champion; versions "
    "without an alias did not pass it (see their decision_reason tag)."
)


def _record(params: Params, decision: RegistryDecision) -> RegistryDecision:
    decision.save(params.paths.metrics / RegistryDecision.FILE)
    return decision
