"""Real HAADF-STEM images (../shared) flow through import, augment and cross-validation with no special case."""

import csv
import shutil

from ncseg.config import load_params
from ncseg.data.dataset import load_samples
from ncseg.data.importer import import_dataset
from ncseg.data.layout import read_manifest
from ncseg.data.rotations import augment
from ncseg.inference.tiling import predict_proba
from ncseg.models.zoo import load_ensemble
from ncseg.records import CVSummary, ModelCard
from ncseg.training.cv import cross_validate
from ncseg.training.plan import assign_folds

from .conftest import ROOT


def test_a_few_real_images_train_one_short_epoch_end_to_end(shared_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with (shared_dataset / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    slices = sorted({r["source_slice"] for r in rows})[:4]
    picked = [r["name"] for r in rows if r["source_slice"] in slices]
    for kind in ("images", "masks", "labels"):
        (tmp_path / "src" / kind).mkdir(parents=True)
        for name in picked:
            shutil.copy(shared_dataset / kind / f"{name}.tif", tmp_path / "src" / kind)
    raw, work = tmp_path / "raw", tmp_path / "work"
    import_dataset(
        tmp_path / "src" / "images",
        tmp_path / "src" / "masks",
        raw,
        groups=shared_dataset / "manifest.csv",
        group_column="source_slice",
        classes=tmp_path / "src" / "labels",
    )
    params = load_params(
        ROOT / "studies" / "pt-alumina" / "params.yaml",
        [
            f"paths={{raw: {raw}, augmented: {work}/aug, models: {work}/models, metrics: {work}/metrics, "
            f"plots: {work}/plots}}",
            "cv.n_folds=2",
            "cv.repeats=1",  # the study repeats CV 3 times; one shows the flow at a third of the cost
            "train.epochs=1",
            "train.steps_per_epoch=1",
            "train.batch_size=2",
            "train.crop_px=64",
            "inference.tile=256",
            "models={unet4: {kind: unet4, base_channels: 4, dropout: 0.0, padding: same, l2: 0.01, weight_decay: 0.0,"
            " aux_classes: 3, aux_weight: 0.5},"
            " classical-otsu: {kind: classical, sigma_nm: 2.0, min_area_nm2: 50.0}}",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ],
    )
    entries = augment(raw, params.paths.augmented, params.augment, params.seed)
    assert {e.group for e in entries} == set(slices)
    folds = assign_folds([e.group for e in read_manifest(params.paths.augmented)], 2, params.seed)
    assert len(set(folds)) == 2
    for model in ("unet4", "classical-otsu"):
        summary = cross_validate(model, params, tmp_path)
        assert summary.n_images == len(picked)
        assert 0.0 <= summary.jaccard_mean <= 1.0
        assert CVSummary.load(params.paths.metrics / "cv" / f"{model}.json") == summary
    assert (params.paths.models / "unet4" / "fold1.pt").is_file()
    card = ModelCard.load(params.paths.models / "unet4" / "model.json")
    assert card.normalization == ("dataset", "image") and len(card.intensity_window) == 2
    # the support / Pt classes came along, and a net trained with their head loads and predicts like any other
    assert sorted(p.name for p in (params.paths.augmented / "classes").iterdir()) == sorted(f"{n}.tif" for n in picked)
    assert card.spec.aux_classes == 3
    nets, geometry = load_ensemble(params.paths.models / "unet4")
    assert len(nets) == params.cv.repeats * 2 and nets[0].aux_head is not None
    samples, _ = load_samples(params.paths.augmented, params.inference)
    prob = predict_proba(nets[:1], geometry, samples[0].image, **params.inference.tiling())
    assert prob.shape == samples[0].mask.shape and 0 <= prob.min() <= prob.max() <= 1
