"""`ncseg predict` refuses what would lose or falsify results before it loads a model or runs a network; a run
writes every image's outputs and a summary that says what made them."""

import os
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.config import ParticleParams
from ncseg.io.images import write_tiff
from ncseg.labels import LabelClass, LabelSet
from ncseg.predict import Segmenter, collect_inputs, output_collisions, run
from ncseg.serving.model import Maps, NcSegmenter

from ..conftest import ROOT

PARTICLES = ParticleParams(min_area_nm2=1.0, min_distance_nm=2.0)


@pytest.fixture
def images(tmp_path):
    image = np.zeros((32, 32), np.uint16)
    image[8:20, 8:20] = 1000
    for path in (tmp_path / "a" / "img.tif", tmp_path / "b" / "img.tif", tmp_path / "a" / "other.tif"):
        write_tiff(path, image, 0.5)
    return tmp_path


def _predict(*args: str):
    """The CLI as a user outside any team setup runs it: no MLFLOW_TRACKING_URI (None unsets it for the call)."""
    env = {"MLFLOW_TRACKING_URI": None}
    return CliRunner().invoke(app, ["predict", *args, "-p", str(ROOT / "params.yaml")], env=env, catch_exceptions=False)


def test_inputs_that_would_overwrite_each_others_results_are_refused(images):
    result = _predict("models:/nc@champion", str(images / "a"), str(images / "b"), "--out", str(images / "out"))
    assert result.exit_code != 0
    assert "would all be written as img.*" in result.output and str(images / "b" / "img.tif") in result.output
    assert not (images / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--threshold", "1.5", "--threshold 1.5: must lie strictly between 0 and 1"),
        ("--threshold", "-0.2", "--threshold -0.2: must lie strictly between 0 and 1"),
        ("--threshold", "nan", "--threshold nan"),
        ("--pixel-size", "-1", "--pixel-size -1.0: must be a positive number"),
        ("--pixel-size", "0", "--pixel-size 0.0: must be a positive number"),
        ("--pixel-size", "inf", "--pixel-size inf: must be a positive number"),
        ("--threshold", "0", "--threshold 0.0: must lie strictly between 0 and 1"),
        ("--threshold", "1", "--threshold 1.0: must lie strictly between 0 and 1"),
        ("--tta", "d8", "--tta d8: must be one of none, flip, d4"),
    ],
)
def test_bad_options_fail_before_any_model_is_loaded(images, option, value, message):
    result = _predict("models:/nc@champion", str(images / "a"), "--out", str(images / "out"), option, value)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "MLflow store" not in result.output, "checked before the model"


@pytest.fixture
def read_only(tmp_path):
    """A folder that refuses new files: by its permission bits, or (root ignores those) sysfs."""
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    if os.access(folder, os.W_OK):
        folder = Path("/sys")
        if not folder.is_dir():
            pytest.skip("running as root without /sys: no folder here refuses writes")
    return folder


def test_an_out_that_cannot_be_written_fails_before_the_model_loads(images, read_only):
    out = read_only / "predictions"
    result = _predict("models:/nc@champion", str(images / "a" / "other.tif"), "--out", str(out))
    assert result.exit_code != 0 and f"--out {out}: cannot be written" in result.output, result.output
    assert not out.exists()


def test_the_same_file_named_twice_is_one_input_but_an_image_and_its_png_twin_collide(images):
    twice = collect_inputs([images / "a", images / "a" / "img.tif"])
    assert twice == [images / "a" / "img.tif", images / "a" / "other.tif"] and output_collisions(twice) == []
    (images / "a" / "img.png").write_bytes(b"")  # only its name matters here
    collisions = output_collisions(collect_inputs([images / "a"]))
    assert len(collisions) == 1 and "img.png" in collisions[0] and "img.tif" in collisions[0]


def test_a_model_that_cannot_be_loaded_is_one_line_not_a_traceback(images, monkeypatch):
    store = f"sqlite:///{images / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    client.create_registered_model("nc")
    (images / "no-model").mkdir()
    client.create_model_version("nc", str(images / "no-model"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    for uri in ("models:/nc/7", "models:/nc/1", "models:/", "runs:/0123456789abcdef/model"):
        args = ["predict", uri, str(images / "a" / "other.tif"), "-p", str(ROOT / "params.yaml")]
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (uri, result.exception)
        assert result.output.startswith(f"error: {uri}") and result.output.strip().count("\n") == 0, result.output


def test_an_out_that_is_a_file_fails_at_once(images):
    (images / "taken").write_text("not a folder")
    result = _predict("models:/nc@champion", str(images / "a"), "--out", str(images / "taken"))
    assert result.exit_code != 0 and "--out" in result.output and "is a file" in result.output


def test_outside_a_project_it_says_so_and_creates_no_store(images, monkeypatch):
    monkeypatch.chdir(images)
    result = _predict("models:/nc@champion", str(images / "a" / "other.tif"), "--out", "out")
    assert result.exit_code != 0 and "no MLflow store at" in result.output
    assert "Traceback" not in result.output
    assert not (images / "mlruns").exists(), "a stray store was created"


class FakeServed(NcSegmenter):
    """Stands for the served model: bright pixels are NC, nothing is in doubt."""

    config = SimpleNamespace(threshold=0.5, tta="none", particles=None, labels=LabelSet.binary())

    def probability(self, image: np.ndarray) -> np.ndarray:
        return (image > 500).astype(np.float32)

    def segment(self, image, tta, pixel_size_nm=None, deadline=None) -> Maps:
        return Maps(self.probability(image), np.zeros(image.shape, np.float32), "")


def _fake(served: NcSegmenter | None = None) -> Segmenter:
    """predict's own Segmenter in front of a stand-in for the served model."""
    return Segmenter(served or FakeServed(), "fake model v1")


def test_a_run_writes_masks_and_a_histogram_in_the_output_folder(images):
    report = run(_fake(), [images / "a" / "img.tif"], images / "out", PARTICLES)
    assert [row["n_particles"] for row in report.done] == [1]
    assert (images / "out" / "masks" / "img.tif").is_file() and (images / "out" / "size_distribution.png").is_file()


def test_labels_and_imagej_rois_carry_the_particle_ids_of_the_table(images):
    import csv

    from roifile import roiread

    from ncseg.interop.imagej import read_rois, rois_to_labels
    from ncseg.io.images import read_image

    image = np.zeros((40, 40), np.uint16)
    image[4:14, 4:14] = image[4:14, 20:30] = image[24:34, 10:20] = 1000
    write_tiff(images / "three.tif", image, 0.5)
    run(_fake(), [images / "three.tif"], images / "out", PARTICLES, rois=True)
    labels = read_image(images / "out" / "labels" / "three.tif")
    assert labels.data.dtype == np.uint16 and labels.pixel_size_nm == pytest.approx(0.5)
    with (images / "out" / "particles" / "three.csv").open() as fh:
        table = [int(row["label"]) for row in csv.DictReader(fh)]
    assert table == sorted(np.unique(labels.data[labels.data > 0]).tolist()) == [1, 2, 3]
    assert [roi.name for roi in roiread(images / "out" / "rois" / "three.zip")] == ["1", "2", "3"]
    back = rois_to_labels(read_rois(images / "out" / "rois" / "three.zip"), labels.data.shape)
    np.testing.assert_array_equal(back, labels.data)


def test_summary_overlay_and_histogram_say_which_model_and_threshold_made_them(images):
    import csv

    import imageio.v3 as iio

    image = np.zeros((40, 40), np.uint16)
    image[0:10, 4:14] = image[20:30, 20:30] = 1000  # one particle cut by the top edge, one inside
    write_tiff(images / "edge.tif", image, 0.5)
    run(_fake(), [images / "edge.tif"], images / "out", PARTICLES, threshold=0.3)
    with (images / "out" / "summary.csv").open() as fh:
        (row,) = csv.DictReader(fh)
    assert row["model"] == "fake model v1" and float(row["threshold"]) == 0.3
    assert (row["n_particles"], row["n_inside"], row["n_border_excluded"]) == ("2", "1", "1")
    with (images / "out" / "particles" / "edge.csv").open() as fh:
        inside = next(r for r in csv.DictReader(fh) if r["touches_border"] == "False")
    assert float(inside["feret_min_nm"]) == pytest.approx(5.0) and float(inside["intensity_mean"]) == 1000
    overlay = iio.imread(images / "out" / "overlays" / "edge.png")
    assert overlay.shape[1] >= 900, "a 40 px image is drawn large enough to read its ids"


def test_a_registered_model_is_described_by_the_version_its_alias_pointed_to(tmp_path):
    from ncseg.registry.lookup import describe_model

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    client.create_registered_model("nc")
    for _ in range(2):
        client.create_model_version("nc", str(tmp_path))
    client.set_registered_model_alias("nc", "champion", "2")
    assert describe_model("models:/nc@champion", store) == "nc v2 (@champion)"
    assert describe_model("models:/nc/1", store) == "nc v1"
    assert describe_model("models:/nc@nobody", store) == "models:/nc@nobody"
    assert describe_model("runs:/abc/model", store) == "runs:/abc/model"


class DoubtfulServed(FakeServed):
    """Bright pixels are NC at 0.8; their outlines are in doubt; an image with a saturated spot is out of domain."""

    def segment(self, image, tta, pixel_size_nm=None, deadline=None) -> Maps:
        from ncseg.uncertainty import boundary_band

        prob = np.where(image > 500, 0.8, 0.1).astype(np.float32)
        doubt = np.where(boundary_band((image > 500).astype(np.int32)) > 0, 0.6, 0.0).astype(np.float32)
        ood = "fraction of pixels at the maximum value (saturated detector?)" if image.max() > 2000 else ""
        return Maps(prob, doubt, ood)


def test_uncertainty_is_written_per_pixel_per_particle_and_per_image(images):
    import csv

    from ncseg.io.images import read_image

    run(_fake(DoubtfulServed()), [images / "a" / "img.tif"], images / "out", PARTICLES)
    uncertainty = read_image(images / "out" / "uncertainty" / "img.tif")
    assert uncertainty.data.dtype == np.float32 and uncertainty.pixel_size_nm == pytest.approx(0.5)
    assert uncertainty.data.max() == pytest.approx(0.6)
    with (images / "out" / "particles" / "img.csv").open() as fh:
        (particle,) = csv.DictReader(fh)
    assert float(particle["confidence"]) == pytest.approx(0.8) and float(particle["boundary_uncertainty"]) == 0.6
    with (images / "out" / "summary.csv").open() as fh:
        (row,) = csv.DictReader(fh)
    assert 0 < float(row["uncertainty"]) < 1 and row["ood"] == ""


def test_an_image_unlike_the_training_data_is_flagged_in_the_summary_and_warned_about(images, caplog):
    import csv

    saturated = np.zeros((32, 32), np.uint16)
    saturated[8:20, 8:20] = 4095
    write_tiff(images / "saturated.tif", saturated, 0.5)
    run(_fake(DoubtfulServed()), [images / "a" / "other.tif", images / "saturated.tif"], images / "out", PARTICLES)
    with (images / "out" / "summary.csv").open() as fh:
        ood = {row["image"]: row["ood"] for row in csv.DictReader(fh)}
    assert ood == {"other.tif": "", "saturated.tif": "fraction of pixels at the maximum value (saturated detector?)"}
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "saturated.tif" in warning.getMessage() and "saturated detector" in warning.getMessage()


class Loaded:
    """What mlflow.pyfunc.load_model returns for an ncseg model: MLflow's predict in front of the served model."""

    def __init__(self, served) -> None:
        from ncseg.serving.protocol import signature

        self.served = served
        self.metadata = mlflow.models.Model(signature=signature(served.config.threshold, served.config.tta))

    def predict(self, data, params=None):
        return self.served.predict(None, data, params)

    def unwrap_python_model(self):
        return self.served


def test_an_image_past_the_servers_size_limit_is_segmented_tile_by_tile(images):
    """The server's max_pixels bounds what one request may cost a shared server; `ncseg predict` runs the model in
    its own process and segments a detector frame or montage of any size."""
    from ncseg.io.images import read_image

    from ..serving.test_model import _served

    served = _served(images / "model", ["image"], max_pixels=32 * 32, max_request_pixels=32 * 32)
    large = np.random.default_rng(9).integers(0, 4000, (48, 80), dtype=np.uint16)
    write_tiff(images / "large.tif", large, 0.5)
    report = run(Segmenter(served, "model"), [images / "large.tif"], images / "out", PARTICLES)
    assert report.failed == [] and len(report.done) == 1
    mask = read_image(images / "out" / "masks" / "large.tif").data
    expected = served.segment(large.astype(np.float32), "none").probability > served.config.threshold
    np.testing.assert_array_equal(mask > 0, expected)


class CarriedServed(FakeServed):
    """A model registered with its particle settings: NCs of at least 1000 nm²."""

    config = SimpleNamespace(
        threshold=0.5,
        tta="none",
        particles=ParticleParams(min_area_nm2=1000.0, min_distance_nm=2.0),
        labels=LabelSet.binary(),
    )


def test_outside_a_project_a_model_folder_predicts_with_the_particle_settings_it_carries(images, monkeypatch):
    """No params.yaml here, no MLFLOW_TRACKING_URI: a model folder needs neither; the 36 nm² square is too small
    for the model's particle settings unless `-S particles.…` says otherwise."""
    import csv

    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda uri: Loaded(CarriedServed()))
    monkeypatch.chdir(images)
    env = {"MLFLOW_TRACKING_URI": None}
    found = []
    for extra in ([], ["-S", "particles.min_area_nm2=10"]):
        args = ["predict", str(images / "model"), str(images / "a" / "img.tif"), "--out", "out", *extra]
        result = CliRunner().invoke(app, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        with (images / "out" / "summary.csv").open() as fh:
            found += [int(row["n_particles"]) for row in csv.DictReader(fh)]
    assert found == [0, 1]
    assert not (images / "mlruns").exists(), "a stray store was created"
    monkeypatch.setattr(CarriedServed.config, "particles", None)  # registered before they travelled with it
    result = CliRunner().invoke(app, ["predict", str(images / "model"), str(images / "a"), "--out", "out"], env=env)
    assert result.exit_code == 1 and "error: the model carries no particle settings" in result.output


def test_a_second_run_into_the_same_folder_keeps_the_first_runs_rows_in_the_summary(images):
    """`ncseg review` ranks summary.csv: the first batch's masks and RoiSets are still there, so are its rows. An
    image predicted again (its outputs are named by stem) replaces its row, also under another suffix."""
    import csv

    run(_fake(), [images / "a" / "img.tif"], images / "out", PARTICLES)
    run(_fake(), [images / "a" / "other.tif"], images / "out", PARTICLES, threshold=0.3)
    write_tiff(images / "img.png", np.zeros((16, 16), np.uint16), None)  # a later img.* overwrites masks/img.tif
    run(_fake(), [images / "img.png"], images / "out", PARTICLES)
    with (images / "out" / "summary.csv").open() as fh:
        rows = {row["image"]: row for row in csv.DictReader(fh)}
    assert list(rows) == ["other.tif", "img.png"]
    assert (rows["other.tif"]["threshold"], rows["img.png"]["n_particles"]) == ("0.3", "0")


def test_an_out_folder_with_a_summary_predict_did_not_write_is_refused_before_the_model_loads(images):
    (images / "out").mkdir()
    (images / "out" / "summary.csv").write_text("name,count\nx,1\n")
    result = _predict("models:/nc@champion", str(images / "a" / "other.tif"), "--out", str(images / "out"))
    assert result.exit_code != 0 and "summary.csv: not a summary `ncseg predict` wrote" in result.output
    assert "MLflow store" not in result.output, "checked before the model"


@pytest.mark.parametrize("where", ["input", "--out"])
def test_a_symlink_loop_is_refused_by_name_before_the_model_loads(images, where):
    loop = images / "loop.tif"
    loop.symlink_to(loop)
    files, out = (loop, images / "out") if where == "input" else (images / "a" / "other.tif", loop)
    result = _predict("models:/nc@champion", str(files), "--out", str(out))
    assert result.exit_code == 1 and result.output.startswith("error:"), result.output
    assert str(loop) in result.output and "symbolic link" in result.output, result.output
    assert "MLflow store" not in result.output, "checked before the model"


def test_weights_changed_after_registration_are_one_line_also_where_lookup_cannot_see_them(images, monkeypatch):
    """Where the weights are not found before loading (a runs:/ URI, a folder laid out otherwise), the model's own
    check at load time (RecordError) is reported like any model that cannot be loaded."""
    from ncseg.predict import load_segmenter
    from ncseg.records import RecordError
    from ncseg.registry.lookup import ModelLookupError

    def tampered(uri: str) -> None:
        raise RecordError(f"{uri}/fold0.pt: differs from the weights model.json was scored with; retrain unet4")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", tampered)
    uri = str(images / "model")
    with pytest.raises(ModelLookupError, match=f"^{uri}: cannot load the model \\({uri}/fold0.pt: differs"):
        load_segmenter(uri, f"sqlite:///{images / 'mlflow.db'}")


THREE = LabelSet(
    (
        LabelClass(name="background", kind="region", colour="#000000"),
        LabelClass(name="support", kind="region", colour="#4060ff"),
        LabelClass(name="pt", kind="particles", colour="#ff3030"),
    )
)


class ClassServed(FakeServed):
    """A 3-class model: mid-grey is support, bright is Pt (a particle class), the rest background; sure of it."""

    config = SimpleNamespace(threshold=None, tta="none", particles=None, labels=THREE)

    def segment(self, image, tta, pixel_size_nm=None, deadline=None) -> Maps:
        classes = np.digitize(image, [500, 1500])
        prob = np.stack([(classes == k) for k in range(3)]).astype(np.float32) * 0.9 + 0.1 / 3
        return Maps(prob, np.full(image.shape, 0.2, np.float32), "")


def test_a_three_class_model_writes_its_class_map_and_a_table_labels_and_rois_per_particle_class(tmp_path):
    import csv

    import tifffile
    from roifile import roiread

    image = np.zeros((40, 40), np.uint16)
    image[:, 20:] = 1000  # support on the right
    image[4:8, 4:8] = image[12:17, 4:9] = image[30:34, 26:30] = 3000  # two Pt on the pores, one on the support
    write_tiff(tmp_path / "in" / "pt.tif", image, 0.25)
    report = run(_fake(ClassServed()), [tmp_path / "in" / "pt.tif"], tmp_path / "out", PARTICLES, rois=True)
    out = tmp_path / "out"
    with tifffile.TiffFile(out / "classes" / "pt.tif") as tif:
        classes, lut = tif.asarray(), np.asarray(tif.imagej_metadata["LUTs"]).reshape(-1, 3, 256)[0]
    assert np.array_equal(classes, np.digitize(image, [500, 1500]))
    assert tuple(lut[:, 2]) == (0xFF, 0x30, 0x30)  # Pt shown in its label colour in Fiji
    with (out / "particles" / "pt_pt.csv").open() as fh:
        pt = list(csv.DictReader(fh))
    assert len(pt) == 3 and sorted(float(p["equivalent_diameter_nm"]) for p in pt)[0] == pytest.approx(
        2 * np.sqrt(16 / np.pi) * 0.25, rel=1e-3
    )
    assert not (out / "particles" / "pt_support.csv").exists()  # a region is measured by its area only
    assert [r.name for r in roiread(out / "rois" / "pt_pt.zip")] == ["pt-1", "pt-2", "pt-3"]
    assert tifffile.imread(out / "labels" / "pt_pt.tif").max() == 3
    (row,) = report.done
    assert row["pt_count"] == 3 and row["n_particles"] == 3 and row["threshold"] == "argmax"
    assert row["support_area_fraction"] == pytest.approx(((image == 1000).sum()) / image.size, abs=1e-4)
    assert row["pt_area_fraction"] == pytest.approx((image == 3000).sum() / image.size, abs=1e-4)
    assert (out / "overlays" / "pt.png").is_file() and (out / "size_distribution_pt.png").is_file()


def test_a_threshold_and_limits_for_a_class_the_model_lacks_are_refused_before_any_image_is_read():
    (argmax,) = _fake(ClassServed()).refusals(0.5, PARTICLES)
    assert "argmax" in argmax
    assert _fake(ClassServed()).refusals(None, PARTICLES) == [] and _fake().refusals(0.5, PARTICLES) == []
    support = ParticleParams.model_validate(PARTICLES.model_dump() | {"classes": {"support": {"min_area_nm2": 1.0}}})
    (region,) = _fake(ClassServed()).refusals(None, support)
    assert "support is not a particle class" in region


def test_a_particle_class_is_cut_with_its_own_limits_and_the_others_with_the_studys(tmp_path):
    import csv

    image = np.zeros((40, 40), np.uint16)
    image[4:8, 4:8] = image[20:30, 20:30] = 3000  # Pt of 16 and 100 px = 1 and 6.25 nm² at 0.25 nm
    write_tiff(tmp_path / "in" / "pt.tif", image, 0.25)
    counts = {}
    for own in (None, 2.0):
        limits = ParticleParams.model_validate(PARTICLES.model_dump() | {"classes": {"pt": {"min_area_nm2": own}}})
        out = tmp_path / f"out-{own}"
        run(_fake(ClassServed()), [tmp_path / "in" / "pt.tif"], out, limits)
        with (out / "particles" / "pt_pt.csv").open() as fh:
            counts[own] = len(list(csv.DictReader(fh)))
    assert counts == {None: 2, 2.0: 1}  # the study's 1 nm² keeps both, the class's own 2 nm² drops the small one
