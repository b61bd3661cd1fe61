"""The napari widget on the tiny study's registered champion: the project's registry is found from its params.yaml,
whatever folder napari was started in."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("napari", reason="the napari extra is not installed (pip install 'ncseg[napari]')")

from ncseg.napari.widget import SegmentWidget

if not os.environ.get("DISPLAY"):  # Qt would abort the whole session; pytest-xvfb sets it where Xvfb is installed
    pytest.skip("no screen: install Debian's xvfb (.ci/run lists the packages)", allow_module_level=True)
pytestmark = pytest.mark.slow


def test_the_widget_segments_with_the_projects_champion(make_napari_viewer, qtbot, tiny_project, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    viewer = make_napari_viewer()
    viewer.open(tiny_project / "data" / "raw" / "images" / "synth_02.tif", plugin="ncseg")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.project.value = tiny_project / "params.yaml"
    assert widget.model.value == "models:/ncseg-nc-segmenter@champion"
    widget.segment_button.native.click()
    qtbot.waitUntil(lambda: "particles" in widget.status.value or "error" in widget.status.value, timeout=120_000)
    assert widget.status.value.startswith("synth_02: "), widget.status.value
    answer = viewer.layers["synth_02 particles"]
    assert answer.data.max() >= 3  # the demo field's NCs
    assert len(widget.table.to_dict("split")["data"]) == answer.data.max()  # one row each
