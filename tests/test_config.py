from pathlib import Path

import pytest

from ncseg.config import LEAK_THRESHOLD, ConfigError, flatten, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_load_with_every_model_kind(params):
    kinds = {m.kind for m in params.models.values()}
    assert {"unet4", "smp", "classical"} <= kinds
    assert params.threshold.study == 0.75
    assert params.cv.n_folds == 5


def test_override_parses_yaml_values():
    p = load_params(ROOT / "params.yaml", ["train.epochs=2", "augment.angles=[90]", "models.unet4.padding=valid"])
    assert p.train.epochs == 2
    assert p.augment.angles == (90,)
    assert p.model("unet4").padding == "valid"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.epochs=0", "epochs"),
        ("nosuch.key=1", "nosuch"),
        ("train.epochs", "section.key=value"),
        ("models.unet4.padding=full", "padding"),
        ("threshold.sweep=[0.9, 0.1, 0.05]", "sweep"),
        ("cv.leak_threshold=1.5", "leak_threshold"),
    ],
)
def test_invalid_settings_are_refused_with_the_key_named(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_params(ROOT / "params.yaml", [override])


def test_missing_params_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_threshold_grid_spans_the_sweep(params):
    grid = params.threshold.grid()
    assert grid[0] == 0.05 and grid[-1] == 0.95 and len(grid) == 19
    assert 0.75 in grid


def test_flatten_uses_dotted_keys_and_params_yaml_names(params):
    flat = flatten(params)
    assert flat["train.epochs"] == str(params.train.epochs)
    assert flat["register.model_name"] == params.registry.model_name
    assert flat["models.unet4.l2"] == "0.01"


def test_a_null_leak_threshold_switches_joining_off_and_a_study_written_before_it_gets_the_default(tmp_path):
    assert load_params(ROOT / "params.yaml", ["cv.leak_threshold=null"]).cv.leak_threshold is None
    older = (ROOT / "params.yaml").read_text().replace("  leak_threshold:", "  # leak_threshold:")
    (tmp_path / "params.yaml").write_text(older)
    assert load_params(tmp_path / "params.yaml").cv.leak_threshold == LEAK_THRESHOLD


def test_a_particle_class_may_have_its_own_limits_and_only_a_particle_class():
    from .test_labels import THREE

    own = "particles.classes={pt: {min_area_nm2: 2.0}}"
    p = load_params(ROOT / "params.yaml", [THREE, "models.unet4.aux_classes=0", own])
    pt, support = p.particles.of("pt"), p.particles.of("support")
    assert (pt.min_area_nm2, pt.min_distance_nm) == (2.0, p.particles.min_distance_nm)
    assert support == p.particles
    with pytest.raises(ConfigError, match="support is not a particle class of labels"):
        load_params(ROOT / "params.yaml", [THREE, "models.unet4.aux_classes=0", own.replace("pt", "support")])


def test_the_registry_score_is_a_foreground_class_of_a_k_class_study():
    from .test_labels import THREE

    k_class = [THREE, "models.unet4.aux_classes=0"]
    assert load_params(ROOT / "params.yaml", [*k_class, "register.score=pt"]).registry.score == "pt"
    with pytest.raises(
        ConfigError, match=r"register.score 'background': not a foreground class of labels \(support, pt\)"
    ):
        load_params(ROOT / "params.yaml", [*k_class, "register.score=background"])
    with pytest.raises(ConfigError, match=r"register\.score 'nanocrystal': a binary study is scored by its Jaccard"):
        load_params(ROOT / "params.yaml", ["register.score=nanocrystal"])


def test_a_dataset_window_must_be_two_increasing_percentiles():
    with pytest.raises(ConfigError, match="dataset_window"):
        load_params(ROOT / "params.yaml", ["inference.dataset_window=[99.5, 0.5]"])


REAL_STUDY = ROOT / "studies" / "pt-alumina" / "params.yaml"


def test_the_real_data_study_defaults_to_what_fits_two_cpu_cores_and_its_gpu_profile_adds_the_smp_baselines():
    default = load_params(REAL_STUDY)
    gpu = load_params(REAL_STUDY, ["profile=gpu"])
    assert set(default.models) == {"unet4", "classical-otsu"}
    assert set(gpu.models) == {"unet4", "classical-otsu", "smp-unet-resnet18", "smp-unet-resnet34"}
    wider, unet4 = gpu.model("unet4"), default.model("unet4")
    assert (unet4.base_channels, wider.base_channels) == (16, 32)
    assert wider.model_copy(update={"base_channels": 16}) == unet4  # merged over the file: the rest stays
    assert (default.train.crop_px, default.train.workers, gpu.train.crop_px, gpu.train.workers) == (160, 0, 256, 8)
    assert gpu.train.epochs == default.train.epochs
    assert gpu.paths.metrics != default.paths.metrics  # a gpu run never overwrites the defaults' results
    assert gpu.paths.raw == default.paths.raw
    assert flatten(gpu)["profile"] == "gpu"  # the MLflow run says which profile it ran


CLASSES_STUDY = ROOT / "studies" / "pt-alumina-classes" / "params.yaml"


def test_the_classes_study_defaults_to_what_fits_two_cpu_cores_and_its_profiles_add_the_peers():
    default = load_params(CLASSES_STUDY)
    peers, gpu = (load_params(CLASSES_STUDY, [f"profile={name}"]) for name in ("peers", "gpu"))
    assert set(default.models) == {"unet4", "classical-levels"}  # `make real-data`: the hour on 2 CPU cores
    assert set(peers.models) == set(gpu.models) == {"unet4", "classical-levels", "smp-unet-resnet18", "recipe-unet6"}
    assert peers.model("smp-unet-resnet18") == gpu.model("smp-unet-resnet18")
    assert peers.paths == default.paths  # the peers' CPU results sit beside the defaults'
    assert gpu.paths.metrics != default.paths.metrics and gpu.paths.raw == default.paths.raw


def test_the_published_recipe_runs_its_own_schedule_only_in_the_gpu_profile():
    cpu = load_params(CLASSES_STUDY, ["profile=peers"]).model("recipe-unet6")
    gpu = load_params(CLASSES_STUDY, ["profile=gpu"]).model("recipe-unet6")
    assert (cpu.train["crop_px"], cpu.train["epochs"]) == (256, 10)
    assert (gpu.train["crop_px"], gpu.train["epochs"], gpu.train["patience"]) == (512, 100, 100)
    assert gpu.model_copy(update={"train": cpu.train}) == cpu  # the same network and loss: only the schedule differs


def test_an_explicit_setting_wins_over_the_profile_it_selects_and_may_edit_the_profile():
    p = load_params(REAL_STUDY, ["train.workers=2", "profile=gpu"])
    assert p.train.workers == 2 and "smp-unet-resnet34" in p.models
    assert load_params(REAL_STUDY, ["profile=gpu", "profiles.gpu.train.epochs=3"]).train.epochs == 3
    with pytest.raises(ConfigError, match=r"params\.yaml: profiles\.gpu: expected a mapping"):
        load_params(REAL_STUDY, ["profile=gpu", "profiles.gpu=3"])


def test_a_setting_may_reach_a_model_only_the_profile_adds_whichever_comes_first():
    for order in (
        ["profile=gpu", "models.smp-unet-resnet18.encoder=resnet50"],
        ["models.smp-unet-resnet18.encoder=resnet50", "profile=gpu"],
    ):
        assert load_params(REAL_STUDY, order).model("smp-unet-resnet18").encoder == "resnet50"


def test_a_profile_named_in_the_file_is_merged_without_an_override(tmp_path):
    written = REAL_STUDY.read_text().replace("\nprofile: null", "\nprofile: gpu")
    assert written != REAL_STUDY.read_text()
    (tmp_path / "params.yaml").write_text(written)
    assert "smp-unet-resnet34" in load_params(tmp_path / "params.yaml").models
