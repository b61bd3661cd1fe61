"""What napari is given, without a screen: layers scaled in nm, the answer a user corrects, the particle table as
the layer's features, and datasets opened with their masks."""

from __future__ import annotations

import numpy as np
import pytest

from ncseg.data.layout import IMAGES
from ncseg.io.images import read_image
from ncseg.napari.layers import (
    ANSWER,
    KEPT,
    META,
    PARTICLES,
    UNCERTAINTY,
    dataset_layers,
    kept_aside,
    mark_saved,
    role_of,
    segmentation_layers,
    unsaved,
)
from ncseg.napari.reader import get_reader
from ncseg.predict.outputs import instances
from ncseg.predict.segment import Segmenter

from ..serving.test_model import THREE, _served


def _roles(layers):
    return [(kwargs["metadata"][META]["role"], kind) for _, kwargs, kind in layers]


@pytest.mark.parametrize("labels", [None, THREE], ids=["binary", "three-class"])
def test_the_answer_is_scaled_in_nm_and_carries_its_particle_table(tmp_path, small_raw, small_params, labels):
    image = read_image(next((small_raw / IMAGES).glob("*.tif")))
    segmenter = Segmenter(_served(tmp_path, ["image"], labels=labels), "tiny")
    seg = segmenter.segment(image)
    found = instances(seg, small_params.particles)
    layers = segmentation_layers(seg, found)
    px = image.pixel_size_nm
    assert px and all(kwargs["scale"] == (px, px) and kwargs["units"] == ("nm", "nm") for _, kwargs, _ in layers)
    if labels is None:
        assert _roles(layers) == [(ANSWER, "labels"), (UNCERTAINTY, "image")]
        assert layers[0][0] is found[1].labels
    else:
        assert _roles(layers) == [(ANSWER, "labels"), (PARTICLES, "labels"), (UNCERTAINTY, "image")]
        assert np.array_equal(layers[0][0], seg.classes)
        assert layers[0][1]["colormap"][2] == "#ff3030" and layers[0][1]["colormap"][0] == "transparent"
    data, kwargs, _ = layers[-2]
    features = kwargs["features"]
    assert features["index"] == sorted(set(np.unique(data)) - {0})  # one row per particle, keyed by its label
    assert len(features["equivalent_diameter_nm"]) == len(features["index"])


def test_an_answer_knows_when_it_holds_paint_not_yet_added_and_is_kept_aside_under_its_own_name(
    tmp_path, small_raw, small_params
):
    image = read_image(next((small_raw / IMAGES).glob("*.tif")))
    seg = Segmenter(_served(tmp_path, ["image"]), "tiny").segment(image)
    data, kwargs, _ = segmentation_layers(seg, instances(seg, small_params.particles))[0]
    metadata = kwargs["metadata"]
    assert not unsaved(metadata, data)  # as the model answered
    data[:4, :4] = data.max() + 1  # the user paints a particle
    assert unsaved(metadata, data)
    mark_saved(metadata, data.copy())  # `add` sent it to the training data
    assert not unsaved(metadata, data)
    data[:4, :4] = 0
    assert unsaved(metadata, data)  # painted again after the add
    name, kept = kept_aside(metadata, kwargs["name"])
    assert name == f"{kwargs['name']} (unsaved correction)" and role_of(kept, image.path.stem) == KEPT
    assert role_of(metadata, image.path.stem) == ANSWER  # the layer's own metadata is left as it was


def test_a_dataset_folder_opens_as_images_with_their_masks_in_nm(small_raw):
    layers = get_reader(str(small_raw))(str(small_raw))
    names = sorted(kwargs["name"] for _, kwargs, _ in layers)
    stems = sorted(p.stem for p in (small_raw / IMAGES).glob("*.tif"))
    assert names == sorted([*stems, *(f"{s} mask" for s in stems)])
    image, kwargs, kind = layers[0]
    px = read_image(small_raw / IMAGES / f"{stems[0]}.tif").pixel_size_nm
    assert kind == "image" and kwargs["scale"] == (px, px)
    mask, _, kind = layers[1]
    assert kind == "labels" and mask.shape == image.shape and set(np.unique(mask)) <= {0, 1}


def test_a_tracked_dataset_not_pulled_is_named_with_the_command_that_fetches_it(tmp_path, small_raw):
    (tmp_path / "data.dvc").write_text("outs:\n- path: data/raw\n")
    reader = get_reader(str(tmp_path / "data.dvc"))
    with pytest.raises(ValueError, match=r"data\.dvc: .*data/raw is not in the workspace; run `dvc pull data\.dvc`"):
        reader(str(tmp_path / "data.dvc"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(small_raw)
    assert len(dataset_layers(small_raw)) == len(reader(str(tmp_path / "data.dvc")))


def test_files_ncseg_does_not_read_are_left_to_other_plugins(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None  # a folder without micrographs
