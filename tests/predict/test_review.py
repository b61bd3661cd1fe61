"""`ncseg review`: the images to correct first, most uncertain on top, or a clear no where nothing was scored."""

import pytest
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.predict.review import rank


def _predictions(folder, header: str, rows: list[str]):
    folder.mkdir()
    (folder / "summary.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


def _review(*args):
    return CliRunner().invoke(app, ["review", *map(str, args)], env={"COLUMNS": "120"})


@pytest.fixture
def scored(tmp_path):
    folder = _predictions(
        tmp_path / "predictions",
        "image,n_particles,uncertainty,ood",
        ["calm.tif,30,0.01,False", "odd.tif,4,0.40,True", "blank.tif,0,", "mid.tif,12,0.12,False"],
    )
    (folder / "rois").mkdir()
    (folder / "rois" / "odd.zip").write_bytes(b"")
    return folder


def test_images_are_listed_worst_first_with_what_to_open(scored):
    ranked = rank(scored)
    assert [c.image for c in ranked] == ["odd.tif", "mid.tif", "calm.tif", "blank.tif"]
    assert ranked[0].open == scored / "rois" / "odd.zip", "the RoiSet, where predict wrote one"
    assert ranked[1].open == scored / "overlays" / "mid.png"
    assert ranked[-1].uncertainty is None and ranked[0].ood == "True"


def test_the_table_shows_the_ranking_and_top_cuts_it(scored):
    result = _review(scored)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if ".tif" in line]
    assert [line.split("│")[2].strip() for line in lines] == ["odd.tif", "mid.tif", "calm.tif", "blank.tif"]
    assert "0.4" in lines[0] and "True" in lines[0] and "rois/odd.zip" in lines[0]
    assert "not scored" in lines[-1]
    top = _review(scored, "--top", "2")
    assert top.exit_code == 0 and "mid.tif" in top.output and "calm.tif" not in top.output


def test_predictions_without_uncertainty_are_refused_with_the_reason(tmp_path):
    folder = _predictions(tmp_path / "old", "image,n_particles", ["a.tif,3"])
    result = _review(folder)
    assert result.exit_code != 0
    assert f"{folder / 'summary.csv'}: no 'uncertainty' column" in result.output
    assert "made without uncertainty" in result.output


def test_a_folder_that_is_no_predictions_folder_is_named(tmp_path):
    result = _review(tmp_path)
    assert result.exit_code != 0 and f"{tmp_path / 'summary.csv'}: not found" in result.output


def test_a_summary_without_an_image_column_is_refused_naming_it(tmp_path):
    folder = _predictions(tmp_path / "edited", "name,n_particles,uncertainty", ["a.tif,3,0.2"])
    result = _review(folder)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{folder / 'summary.csv'}: no 'image' column" in result.output


def test_a_row_without_an_image_name_is_refused_with_its_line(tmp_path):
    folder = _predictions(tmp_path / "edited", "n_particles,uncertainty,image", ["3,0.2,a.tif", "4,0.3"])
    result = _review(folder)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{folder / 'summary.csv'}: no image name on line 3" in result.output


def test_a_k_class_models_image_opens_as_its_class_map_the_thing_to_correct(scored):
    (scored / "classes").mkdir()
    (scored / "classes" / "mid.tif").write_bytes(b"")
    assert {c.image: c.open for c in rank(scored)}["mid.tif"] == scored / "classes" / "mid.tif"
