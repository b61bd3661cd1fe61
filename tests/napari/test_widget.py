"""The dock widget in a real napari viewer (Qt on Xvfb): open a micrograph with ncseg's reader, segment it with a
model folder, correct the answer with napari's label tools, add it to the project's training data."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from ncseg.data.groups import read_groups
from ncseg.data.layout import IMAGES, MASKS
from ncseg.io.images import read_image, read_mask
from ncseg.napari.widget import SegmentWidget

if not os.environ.get("DISPLAY"):  # Qt would abort the whole session; pytest-xvfb sets it where Xvfb is installed
    pytest.skip("no screen: install Debian's xvfb (.ci/run lists the packages)", allow_module_level=True)
pytestmark = pytest.mark.slow
WAIT_MS = 120_000


@pytest.fixture
def opened(make_napari_viewer, small_raw, tmp_path):
    """A viewer with a new field of view opened by ncseg's reader, and the widget docked in it."""
    viewer = make_napari_viewer()
    source = next((small_raw / IMAGES).glob("*.tif"))
    shutil.copy(source, tmp_path / "field_a.tif")
    viewer.open(tmp_path / "field_a.tif", plugin="ncseg")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _click_and_wait(qtbot, widget, button, until):
    button.native.click()
    qtbot.waitUntil(lambda: until() or widget.status.value.startswith("error"), timeout=WAIT_MS)
    assert not widget.status.value.startswith("error"), widget.status.value


def test_segment_correct_add(opened, qtbot, project, model_folder):
    viewer, widget = opened
    widget.project.value = project
    widget.model.value = str(model_folder)
    widget.image.value = viewer.layers["field_a"]
    px = viewer.layers["field_a"].scale[-1]
    assert px != 1 and str(viewer.layers["field_a"].units[-1]) == "nanometer"  # the TIFF's pixel size as scale

    _click_and_wait(qtbot, widget, widget.segment_button, lambda: "field_a particles" in viewer.layers)
    answer = viewer.layers["field_a particles"]
    assert tuple(answer.scale) == (px, px) and "field_a uncertainty" in viewer.layers
    assert answer.features["index"].tolist() == sorted(set(np.unique(answer.data)) - {0})
    assert "particles" in widget.status.value
    table = widget.table.to_dict("split")
    assert list(table["columns"][:3]) == ["layer", "label", "area_px"] and len(table["data"]) == len(answer.features)

    answer.data[answer.data == 1] = 0  # the user erases a particle, and paints one the model missed
    new = int(answer.data.max()) + 1
    answer.selected_label, answer.brush_size = new, 5
    answer.paint((8, 8), new)
    corrected = np.asarray(answer.data).copy()
    assert corrected[8, 8] == new and (new == 1 or not (corrected == 1).any())
    widget.group.value = "region-a"
    _click_and_wait(qtbot, widget, widget.add_button, lambda: widget.status.value.startswith("added"))
    assert widget.status.value.startswith("added field_a"), widget.status.value

    raw = project.parent / "data" / "raw"
    assert np.array_equal(read_mask(raw / MASKS / "field_a.tif"), corrected > 0)
    assert np.array_equal(read_image(raw / IMAGES / "field_a.tif").data, viewer.layers["field_a"].data)
    assert read_groups(raw)["field_a"] == "region-a"

    def segmented_again() -> bool:
        return "particles" in widget.status.value and widget.worker is not None and not widget.worker.is_running

    _click_and_wait(qtbot, widget, widget.segment_button, segmented_again)  # what was added is safe: replaced
    assert [la.name for la in viewer.layers if "particles" in la.name] == ["field_a particles"]
    viewer.layers["field_a particles"].paint((20, 20), 99)  # a correction not yet added ...
    _click_and_wait(qtbot, widget, widget.segment_button, segmented_again)
    kept = viewer.layers["field_a particles (unsaved correction)"]  # ... is not thrown away by a new answer
    assert kept.data[20, 20] == 99 and "kept" in widget.status.value
    assert not (viewer.layers["field_a particles"].data == 99).any()


def test_a_correction_kept_aside_by_a_new_answer_can_still_be_added(opened, qtbot, project, model_folder):
    viewer, widget = opened
    widget.project.value, widget.model.value = project, str(model_folder)
    widget.image.value = viewer.layers["field_a"]
    _click_and_wait(qtbot, widget, widget.segment_button, lambda: "field_a particles" in viewer.layers)
    viewer.layers["field_a particles"].paint((20, 20), 99)
    first = widget.worker
    _click_and_wait(
        qtbot,
        widget,
        widget.segment_button,
        lambda: widget.worker is not first and "kept" in widget.status.value,
    )
    kept = viewer.layers["field_a particles (unsaved correction)"]
    viewer.layers.selection.active = kept  # the user still wants it: select it and add it
    _click_and_wait(qtbot, widget, widget.add_button, lambda: widget.status.value.startswith("added"))
    raw = project.parent / "data" / "raw"
    assert np.array_equal(read_mask(raw / MASKS / "field_a.tif"), np.asarray(kept.data) > 0)
    assert not np.array_equal(np.asarray(kept.data) > 0, np.asarray(viewer.layers["field_a particles"].data) > 0)


def test_a_project_without_models_is_named_on_screen(opened, qtbot, project):
    viewer, widget = opened
    widget.project.value = project
    assert widget.model.value == "models:/ncseg-nc-segmenter@champion"  # the project's champion by default
    widget.segment_button.native.click()
    qtbot.waitUntil(lambda: widget.status.value.startswith("error"), timeout=WAIT_MS)
    assert f"no MLflow store at {project.parent / 'mlruns'}" in widget.status.value
    assert "field_a particles" not in viewer.layers
    assert widget.segment_button.enabled


def test_the_default_model_follows_the_project_until_the_user_types_one(opened, tmp_path, small_raw):
    from .conftest import write_project

    _, widget = opened
    first = write_project(tmp_path / "a", small_raw)
    other = write_project(tmp_path / "b", small_raw, "register.model_name=pt-classes")
    widget.project.value = first
    assert widget.model.value == "models:/ncseg-nc-segmenter@champion"
    widget.project.value = other
    assert widget.model.value == "models:/pt-classes@champion"  # the new project's champion, not the old one's
    widget.model.value = "models:/pt-classes/3"
    widget.project.value = first
    assert widget.model.value == "models:/pt-classes/3"  # typed by the user: kept
