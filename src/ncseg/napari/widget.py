"""The dock widget: pick a model and an image layer, segment it off the UI thread, correct the answer with napari's
label tools, add it to the training data, retrain.

Thin on purpose: every button calls one function of `ncseg.napari.actions` in a napari worker (its progress shows
in napari's activity dock; a model loads once per URI and project) and reports the outcome, or the error in one
line, in the widget's status line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import Container, FileEdit, Label, LineEdit, PushButton, Table, create_widget
from napari.layers import Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

from ncseg.io.images import Micrograph
from ncseg.napari import actions
from ncseg.napari.layers import (
    ANSWER,
    KEPT,
    META,
    PARTICLES,
    UNCERTAINTY,
    kept_aside,
    mark_saved,
    particle_rows,
    role_of,
    unsaved,
)

SHOWN = (ANSWER, PARTICLES, UNCERTAINTY)  # the roles a new answer replaces
TABLE_COLUMNS = ("label", "area_px", "equivalent_diameter_nm", "feret_max_nm", "nn_gap_nm", "confidence")
# ConfigError, ImportRefusedError, ModelLookupError (ValueError, LookupError); FolderBusyError (RuntimeError)
ERRORS = (ValueError, LookupError, OSError, RuntimeError)


class SegmentWidget(Container):
    """ncseg's dock widget (the manifest's `ncseg.segment`)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.project = FileEdit(label="project", mode="r", filter="*.yaml", value=Path.cwd() / "params.yaml")
        self.model = LineEdit(label="model", tooltip="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/…, or a folder")
        self.image = create_widget(annotation=napari.layers.Image, label="image")
        self.segment_button = PushButton(text="Segment")
        self.table = Table(value=_table([]))
        self.group = LineEdit(label="group", tooltip="the specimen region the image shows (CV keeps it in one fold)")
        self.add_button = PushButton(text="Add correction to training data")
        self.retrain_button = PushButton(text="Retrain (dvc repro)")
        self.status = Label(value="")
        self.extend([self.project, self.model, self.image, self.segment_button, self.table, self.group])
        self.extend([self.add_button, self.retrain_button, self.status])
        self.worker: Any = None  # the last worker started (tests wait on it)
        self._models = actions.Models()
        self._default = ""  # the model field's value as the project's default last set it
        self.segment_button.changed.connect(self.segment)
        self.add_button.changed.connect(self.add)
        self.retrain_button.changed.connect(self.retrain)
        self.project.changed.connect(self._default_model)
        self._default_model()

    def _default_model(self) -> None:
        """The project's champion, unless the user typed a model of their own."""
        if self.model.value not in ("", self._default):
            return
        try:
            self._default = self.model.value = self._project().default_model()
        except ERRORS as err:
            self._error(err)

    def _project(self) -> actions.Project:
        return actions.Project.at(Path(self.project.value))

    def _micrograph(self) -> Micrograph:
        layer = self.image.value
        if layer is None:
            raise ValueError("no image layer: open a micrograph first")
        return actions.micrograph_of(layer.data, layer.name, layer.metadata, tuple(layer.scale), tuple(layer.units))

    def segment(self) -> None:
        try:
            model, project, image = self.model.value.strip(), self._project(), self._micrograph()
            if not model:
                raise ValueError("no model: give a registry URI or a model folder")
        except ERRORS as err:
            return self._error(err)

        def work() -> actions.Answer:
            return actions.segment(self._models.get(model, project), image, project)

        self._run(work, f"segmenting {image.path.stem}", self._show)

    def _show(self, answer: actions.Answer) -> None:
        name, kept = answer.segmentation.image.path.stem, ""
        for layer in [la for la in self.viewer.layers if role_of(la.metadata, name) in SHOWN]:
            if role_of(layer.metadata, name) == ANSWER and unsaved(layer.metadata, layer.data):
                layer.name, layer.metadata = kept_aside(layer.metadata, layer.name)
                kept = f"; your unsaved correction is kept as '{layer.name}' (select it and add it to keep it)"
            else:
                self.viewer.layers.remove(layer)
        for data, kwargs, kind in answer.layers:
            self.viewer.add_layer(Layer.create(data, kwargs, kind))
        self.table.value = _table(particle_rows(answer.layers, TABLE_COLUMNS))
        n = sum(len(each.particles) for each in answer.found.values())
        self.status.value = f"{name}: {n} particles; correct its {ANSWER} layer, then add it to the training data{kept}"

    def add(self) -> None:
        try:
            project, image = self._project(), self._micrograph()
            layer = self._answer_layer(image.path.stem)
        except ERRORS as err:
            return self._error(err)
        answer, classes = np.array(layer.data), tuple(layer.metadata[META]["classes"])  # a copy: painting goes on
        group, what = self.group.value.strip() or None, f"adding {image.path.stem} to {project.folder}'s training data"
        self._run(
            lambda: actions.add(project, image, answer, classes, group), what, lambda r: self._added(r, layer, answer)
        )

    def _added(self, result: Any, layer: Layer, sent: np.ndarray) -> None:
        mark_saved(layer.metadata, sent)
        names = ", ".join(pair.name for pair in result.pairs)
        self.status.value = f"added {names} to the training data" + "".join(f"; {w}" for w in result.warnings)

    def _answer_layer(self, name: str) -> Layer:
        """The selected layer where it is one of the image's answers (a correction kept aside included), else the
        image's current answer."""
        active = self.viewer.layers.selection.active
        if active is not None and role_of(active.metadata, name) in (ANSWER, KEPT):
            return active
        found = next((la for la in self.viewer.layers if role_of(la.metadata, name) == ANSWER), None)
        if found is None:
            raise ValueError(f"{name}: no answer to add; segment it first")
        return found

    def retrain(self) -> None:
        try:
            project = self._project()
        except ERRORS as err:
            return self._error(err)
        self._run(lambda: actions.retrain(project), f"retraining (dvc repro in {project.folder})", self._retrained)

    def _retrained(self, last_line: str) -> None:
        self.status.value = f"retrained: {last_line}"

    def _run(self, work: Callable[[], Any], what: str, done: Callable[[Any], None]) -> None:
        """`work` in a napari worker thread, its progress in the activity dock; the buttons off until it ends."""
        self.status.value = what + "…"
        self._enable(False)
        worker = create_worker(work, _progress={"desc": what}, _ignore_errors=True)  # _error shows them
        worker.returned.connect(done)
        worker.errored.connect(self._error)
        worker.finished.connect(lambda: self._enable(True))
        self.worker = worker
        worker.start()

    def _enable(self, enabled: bool) -> None:
        for button in (self.segment_button, self.add_button, self.retrain_button):
            button.enabled = enabled

    def _error(self, err: BaseException) -> None:
        """One line in the status, and napari's notification (a traceback is not what a microscopist needs)."""
        self.status.value = f"error: {err}"
        show_error(f"ncseg: {err}")


def _table(rows: list[list[Any]]) -> dict[str, list]:
    """magicgui's split form (all three keys, or it reads the dict as columns)."""
    return {"data": rows, "index": list(range(1, len(rows) + 1)), "columns": ["layer", *TABLE_COLUMNS]}
