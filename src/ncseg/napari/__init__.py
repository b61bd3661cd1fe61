"""ncseg in napari: a reader for micrographs and datasets, and a dock widget that segments the image in view with
a registered model, shows the answer as layers the user can correct, adds the correction to the training data and
starts the retraining.

An extra (`pip install 'ncseg[napari]'`) and the top layer of the house beside the CLI: nothing else in ncseg
imports napari, Qt or magicgui, so the core, the CLI and the served model stay headless. `layers` turns ncseg's
objects into napari layer data without importing napari (tested without a screen); `widget` is the Qt part.
"""
