"""The benchmarks' shared helpers read what the library records rather than guessing it from names."""

import pytest
import torch

from benchmarks.common import cv_networks
from ncseg.config import UNet4Params
from ncseg.models.zoo import build_net
from ncseg.records import ModelCard, WeightFile, sha256

from ..builders import model_card

SPEC = UNet4Params(kind="unet4", base_channels=4, dropout=0.0, padding="same", l2=0.0, weight_decay=0.0)


def _model_folder(folder, places: list[tuple[int | None, int | None]]) -> list[torch.nn.Module]:
    """A model folder whose weight files are named without any repeat or fold in them."""
    folder.mkdir()
    nets, files = [], []
    for j, (repeat, fold) in enumerate(places):
        torch.manual_seed(j)
        nets.append(build_net(SPEC, 1).eval())
        torch.save(nets[-1].state_dict(), folder / f"net-{j}.pt")
        files.append(WeightFile(file=f"net-{j}.pt", sha256=sha256(folder / f"net-{j}.pt"), repeat=repeat, fold=fold))
    model_card(files, repeats=2).save(folder / ModelCard.FILE)
    return nets


def test_each_cv_network_is_found_by_the_repeat_and_fold_its_card_records(tmp_path):
    places = [(0, 0), (1, 0), (0, 1), (1, 1)]
    saved = _model_folder(tmp_path / "unet4", places)
    nets = cv_networks(tmp_path / "unet4")
    assert sorted(nets) == sorted(places)
    for place, net in zip(places, saved, strict=True):
        for key, value in net.state_dict().items():
            assert torch.equal(nets[place].state_dict()[key], value), f"{place} is not the network the card lists"


def test_a_card_without_recorded_places_is_refused_by_name(tmp_path):
    _model_folder(tmp_path / "unet4", [(0, 0), (None, None)])
    with pytest.raises(SystemExit, match=r"unet4/model.json: net-1.pt has no recorded repeat and fold"):
        cv_networks(tmp_path / "unet4")
