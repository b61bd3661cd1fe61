"""The label set says what the classes are, and refuses a set the rest of the pipeline could not honour."""

import numpy as np
import pytest
import yaml

from ncseg.config import ConfigError, Params, load_params
from ncseg.labels import LabelSet

from .conftest import ROOT

THREE = (
    "labels=[{name: background, kind: region, colour: '#000000'}, {name: support, kind: region, colour: '#3366CC'},"
    " {name: pt, kind: particles, colour: '#ffd700', weight: 2.0}]"
)


def test_the_demo_is_a_binary_set_of_one_particle_class_with_one_output(params):
    labels = params.labels
    assert labels == LabelSet.binary()
    assert (labels.is_binary, labels.n_outputs, labels.foreground, labels.particle_ids) == (True, 1, (1,), (1,))


def test_a_study_written_before_label_sets_is_the_binary_nc_study():
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    del tree["labels"]
    assert Params.model_validate(tree).labels == LabelSet.binary()


def test_three_classes_give_one_softmax_output_each_and_their_weights():
    labels = load_params(ROOT / "params.yaml", [THREE, "models.unet4.aux_classes=0"]).labels
    assert (labels.is_binary, labels.n_outputs, labels.foreground, labels.particle_ids) == (False, 3, (1, 2), (2,))
    assert labels.names == ("background", "support", "pt") and labels.weights == (1.0, 1.0, 2.0)
    assert labels.classes[1].colour == "#3366cc"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("[{name: background, kind: region, colour: '#000000'}]", "at least 2"),
        ("[{name: nc, kind: particles, colour: '#000000'}, {name: bg, kind: region, colour: '#ffffff'}]", "class 0"),
        ("[{name: bg, kind: region, colour: '#000000'}, {name: bg, kind: particles, colour: '#ffffff'}]", "twice"),
        ("[{name: bg, kind: region, colour: '#000000'}, {name: Pt 1, kind: particles, colour: '#ffffff'}]", "Pt 1"),
        ("[{name: bg, kind: region, colour: black}, {name: pt, kind: particles, colour: '#ffffff'}]", "#rrggbb"),
        ("[{name: bg, kind: region, colour: '#000000'}, {name: pt, kind: blob, colour: '#ffffff'}]", "particles"),
    ],
)
def test_a_label_set_the_pipeline_cannot_honour_is_refused_naming_why(labels, message):
    with pytest.raises(ConfigError, match=message):
        load_params(ROOT / "params.yaml", [f"labels={labels}"])


def test_a_multi_class_study_refuses_the_binary_auxiliary_head():
    with pytest.raises(ConfigError, match="aux_classes"):
        load_params(ROOT / "params.yaml", [THREE, "models.unet4.aux_classes=3", "models.unet4.aux_weight=0.5"])


def test_a_class_map_with_an_id_outside_the_set_is_named_with_its_file():
    labels = LabelSet.binary()
    labels.check_map(np.array([[0, 1]], np.uint8), "classes/a.tif")
    with pytest.raises(ValueError, match=r"classes/b.tif: holds class 2, but the label set has 2 classes"):
        labels.check_map(np.array([[0, 2]], np.uint8), "classes/b.tif")
