"""The README's napari picture, remade from a project: its champion segments one of its images in the widget, a
particle is painted by hand, and the whole window is saved. Needs a screen: `xvfb-run -a python
docs/scripts/napari_screenshot.py PROJECT/params.yaml IMAGE.tif docs/napari_widget.png`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from ncseg.napari.widget import SegmentWidget


def main(params: Path, image: Path, out: Path) -> None:
    viewer = napari.Viewer(title="ncseg in napari")
    viewer.window.resize(1900, 1000)
    viewer.open(image, plugin="ncseg")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="ncseg", area="right")
    widget.project.value = params
    widget.segment_button.native.click()
    deadline = time.monotonic() + 300
    while "particles" not in widget.status.value and "error" not in widget.status.value:
        QApplication.processEvents()
        if time.monotonic() > deadline:
            raise SystemExit("segmentation did not finish in 5 min")
        time.sleep(0.05)
    if widget.status.value.startswith("error"):
        raise SystemExit(widget.status.value)
    answer = viewer.layers[f"{image.stem} particles"]
    viewer.scale_bar.visible = True  # in nm: the layers are scaled by the pixel size
    viewer.reset_view()
    answer.mode = "paint"
    viewer.layers.selection.active = answer
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    print(f"{out}: {widget.status.value}")
    viewer.close()


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]))
