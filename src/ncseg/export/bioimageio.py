"""A registered model as a BioImage.IO model package (spec 0.5): what deepImageJ (Fiji), ilastik and QuPath run
without Python or ncseg.

The package holds one network module — the served members' mean sigmoid (softmax for a K-class model) and the
model's calibration, exactly the computation after normalisation that `mlflow models serve` runs — as TorchScript
and ONNX weights; the normalisation as the spec's own preprocessing (the image's 0.5-99.5 percentile range, or the
dataset's fixed window, then clipped to [0, 1]), so the consumer normalises the whole image before it tiles it, as
ncseg does; inputs of any size the network takes (min and step from its geometry) and the halo its context needs;
test tensors and a cover from a real micrograph; a README with the CV scores; and, in `config.ncseg`, the
registered model's name, version and CV run, so the package traces back to its MLflow run.

A model fed several normalisations of the image (the real-data study's `[dataset, image]`) gets one input tensor per
view, each the same raw image with its own preprocessing; the module stacks them as the network's channels.
"""

from __future__ import annotations

import copy
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ncseg.inference.tiling import context_pad
from ncseg.normalization import PERCENTILES, views
from ncseg.records import ServingConfig

if TYPE_CHECKING:
    from ncseg.serving.model import NcSegmenter

ONNX_OPSET = 17
EPS = 1e-6  # as ncseg.calibration: probabilities are clipped before their logit
TEST_SIDE = 256  # the test tensors' side (the largest valid size up to it): enough image, a fast `bioimageio test`


class ExportError(ValueError):
    """A model this exporter cannot package faithfully, or an image it cannot use; the message says which."""


class ServedNetwork(nn.Module):
    """The served computation on a normalised (B, 1, H, W) batch of any size: mirrored by the served context and up
    to a size the network takes (as ncseg's tiler pads a tile), each member's sigmoid (or softmax), their mean,
    cropped back, then the temperature (ncseg.calibration), in float32. An image that fits one of ncseg's tiles gets
    exactly the served probability; a consumer that tiles a larger one overlaps its tiles by the declared halo."""

    def __init__(self, nets: list[nn.Module], temperature: float, pad: int, divisor: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(nets)
        self.temperature = float(temperature)
        self.classes = nets[0].outputs  # 1: one sigmoid output (binary); K: softmax over K
        self.pad, self.divisor = pad, divisor

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        """The probabilities of the normalised views, (B, 1, H, W) each, in the order of `inference.normalization`."""
        x = torch.cat(views, dim=1)
        h, w = x.shape[-2], x.shape[-1]
        after_h = (-(h + 2 * self.pad)) % self.divisor + self.pad
        after_w = (-(w + 2 * self.pad)) % self.divisor + self.pad
        padded = F.pad(x, [self.pad, after_w, self.pad, after_h], mode="reflect")
        prob = self.probability(padded)
        return prob[..., self.pad : self.pad + h, self.pad : self.pad + w]

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        if self.classes == 1:
            prob = torch.stack([torch.sigmoid(net(x)) for net in self.members]).mean(0)
            if self.temperature != 1.0:
                p = prob.clamp(EPS, 1 - EPS)
                prob = torch.sigmoid((torch.log(p) - torch.log1p(-p)) / self.temperature)
            return prob
        prob = torch.stack([torch.softmax(net(x), dim=1) for net in self.members]).mean(0)
        if self.temperature != 1.0:
            prob = torch.softmax(torch.log(prob.clamp(min=EPS)) / self.temperature, dim=1)
        return prob


@dataclass(frozen=True)
class Source:
    """What the package is made from: the served model and where it came from."""

    served: NcSegmenter
    uri: str
    name: str  # the registered model's name, or the URI's last part
    version: str | None  # the registered version (an alias resolved), None for a run or folder

    @classmethod
    def load(cls, model_uri: str, tracking_uri: str) -> Source:
        """The model behind `model_uri` (a registry URI, runs:/ or a folder) and its registered name and version,
        or a ModelLookupError in one line."""
        from ncseg.registry.lookup import load_served, registered_version

        served = load_served(model_uri, tracking_uri)
        name, version = registered_version(model_uri, tracking_uri) or (model_uri.rstrip("/").rsplit("/", 1)[-1], None)
        return cls(served, model_uri, name, version)

    @property
    def cv_jaccard(self) -> str:
        card = self.served.card
        return f"{card.cv_jaccard_mean:.4f} ± {card.cv_jaccard_std:.4f}"


def module_of(config: ServingConfig, nets: list[nn.Module]) -> ServedNetwork:
    """The exported module of a served model, after checking it can be exported faithfully."""
    geometry = nets[0].geometry
    if geometry.margin or geometry.offset:
        raise ExportError(f"{config.architecture}: a 'valid' U-Net (output smaller than input) is not exported yet")
    _, pad = context_pad(geometry, config.inference.context)
    nets = [copy.deepcopy(n).float().to(memory_format=torch.contiguous_format) for n in nets]  # the served stay
    return ServedNetwork(nets, config.temperature, pad, geometry.divisor).eval()


def smallest_input(module: ServedNetwork) -> int:
    """The smallest side the module mirrors by its context (a mirror needs more pixels than it reflects)."""
    return 2 * module.pad + module.divisor


def test_crop(image: np.ndarray, module: ServedNetwork) -> np.ndarray:
    """A centred crop of the image of at most TEST_SIDE px a side (more where the module's smallest input is
    larger): the package's test tensors."""
    least = smallest_input(module)
    if min(image.shape) < least:
        raise ExportError(f"image of shape {image.shape}: the package's inputs are at least {least} px")
    side = max(TEST_SIDE, least)
    h, w = min(side, image.shape[0]), min(side, image.shape[1])
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[y : y + h, x : x + w]


def normalised(crop: np.ndarray, config: ServingConfig) -> list[torch.Tensor]:
    """The crop as the package's preprocessing leaves each input: (1, 1, H, W) per view."""
    stack = views(crop, config.normalization, config.intensity_window)
    return [torch.from_numpy(np.ascontiguousarray(v))[None, None] for v in stack]


def input_ids(config: ServingConfig) -> list[str]:
    """The input tensors' ids: `image` for a one-view model (as consumers expect), else one per view."""
    if len(config.normalization) == 1:
        return ["image"]
    return [VIEW_INPUTS[v] for v in config.normalization]


VIEW_INPUTS = {"image": "image_percentiles", "dataset": "image_dataset_window"}


def _preprocessing(view: str, config: ServingConfig) -> list:
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        ClipDescr,
        ClipKwargs,
        ScaleLinearDescr,
        ScaleLinearKwargs,
        ScaleRangeDescr,
        ScaleRangeKwargs,
    )

    if view == "dataset":
        lo, hi = config.intensity_window or (0.0, 1.0)
        scale = ScaleLinearDescr(kwargs=ScaleLinearKwargs(gain=1.0 / (hi - lo), offset=-lo / (hi - lo)))
    else:
        scale = ScaleRangeDescr(
            kwargs=ScaleRangeKwargs(
                axes=[AxisId("y"), AxisId("x")],
                min_percentile=PERCENTILES[0],
                max_percentile=PERCENTILES[1],
                eps=1e-6,
            )
        )
    return [scale, ClipDescr(kwargs=ClipKwargs(min=0.0, max=1.0))]


def _axes(first: str, channels: list[str], module: ServedNetwork, kind: Literal["first", "same", "output"]) -> list:
    """The axes of the first input (`kind` "first": any size the module takes), of a further input ("same": the
    first's size) or of the output ("output": the first's size, with the halo the context needs)."""
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        BatchAxis,
        ChannelAxis,
        ParameterizedSize,
        SizeReference,
        SpaceInputAxis,
        SpaceOutputAxisWithHalo,
        TensorId,
    )

    channel = ChannelAxis(channel_names=channels)

    def same(a: str) -> SizeReference:
        return SizeReference(tensor_id=TensorId(first), axis_id=AxisId(a))

    if kind == "first":  # any size from the smallest the module mirrors: it pads to what the network takes
        size = ParameterizedSize(min=smallest_input(module), step=1)
        space = [SpaceInputAxis(id=AxisId(a), size=size) for a in ("y", "x")]
    elif kind == "same":
        space = [SpaceInputAxis(id=AxisId(a), size=same(a)) for a in ("y", "x")]
    else:
        space = [SpaceOutputAxisWithHalo(id=AxisId(a), size=same(a), halo=module.pad) for a in ("y", "x")]
    return [BatchAxis(), channel, *space]


def _weights(module: ServedNetwork, example: list[torch.Tensor], names: list[str], folder: Path) -> tuple[Path, Path]:
    """TorchScript (traced) and ONNX files of `module`, any batch and image size."""
    with torch.no_grad():
        traced = torch.jit.trace(module, tuple(example))
    script = folder / "ncseg_torchscript.pt"
    traced.save(str(script))
    onnx = folder / "ncseg.onnx"
    torch.onnx.export(
        module,
        tuple(example),
        str(onnx),
        input_names=names,
        output_names=["probability"],
        dynamic_axes={n: {0: "batch", 2: "y", 3: "x"} for n in [*names, "probability"]},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    return script, onnx


def _readme(source: Source, config: ServingConfig, path: Path) -> None:
    classes = ", ".join(config.labels.names)
    rule = "argmax over the classes" if config.threshold is None else f"probability > {config.threshold:.2f}"
    path.write_text(
        f"# {source.name}{f' v{source.version}' if source.version else ''} (ncseg)\n\n"
        f"Segments HAADF-STEM micrographs into {classes}: {config.architecture}, {config.members} cross-validation "
        f"fold network(s), their mean probability, calibrated (temperature {config.temperature:.3f}).\n\n"
        f"- Input: {_inputs_text(config)}\n"
        f"- Output: per pixel the probability of each output channel; the mask ncseg makes from it: {rule}.\n"
        f"- Cross-validated Jaccard (mean over folds): {source.cv_jaccard}; "
        f"MLflow CV run `{source.served.card.cv_run_id}`; "
        f"registered as `{source.uri}`.\n"
        "- ncseg's own `ncseg predict` adds what this package does not: particles split and measured in nm, "
        "uncertainty, out-of-distribution flags.\n"
    )


def _inputs_text(config: ServingConfig) -> str:
    window = {"image": "the image's own 0.5-99.5 percentiles", "dataset": "the training data's intensity window"}
    if len(config.normalization) == 1:
        return (
            f"one greyscale image (any bit depth), normalised by the package's preprocessing "
            f"({window[config.normalization[0]]}, clipped to [0, 1])."
        )
    each = "; ".join(f"`{VIEW_INPUTS[v]}` by {window[v]}" for v in config.normalization)
    return (
        f"the same greyscale image (any bit depth) in each of {len(config.normalization)} inputs, each normalised "
        f"by its own preprocessing ({each}; clipped to [0, 1]): the network sees both views as channels."
    )


def _channels(config: ServingConfig) -> list[str]:
    names = config.labels.names
    return [names[1]] if config.labels.is_binary else list(names)


def build(source: Source, image: np.ndarray, out: Path, cite: list[tuple[str, str]] = ()) -> Path:
    """The package `out` (.zip) of `source`, its test tensors from `image` (a micrograph like its training data);
    `cite` adds (text, DOI) entries, e.g. the paper of the data it was trained on."""
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model.v0_5 import (
        Author,
        CiteEntry,
        Doi,
        FileDescr,
        InputTensorDescr,
        LicenseId,
        ModelDescr,
        OnnxWeightsDescr,
        OutputTensorDescr,
        TensorId,
        TorchscriptWeightsDescr,
        Version,
        WeightsDescr,
    )

    from ncseg import figures

    unet = CiteEntry(text="Ronneberger, Fischer, Brox. U-Net. MICCAI 2015", doi=Doi("10.1007/978-3-319-24574-4_28"))
    served = source.served
    config = served.config
    module = module_of(config, served.nets)
    crop = test_crop(image, module)
    x, inputs = normalised(crop, config), input_ids(config)
    with torch.no_grad():
        y = module(*x).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "test_input.npy", crop.astype(np.float32)[None, None])  # every input: the raw crop
        np.save(folder / "test_output.npy", y.astype(np.float32))
        script, onnx = _weights(module, x, inputs, folder)
        classes = (y[0, 0] > config.threshold).astype(np.uint8) if config.threshold is not None else y[0].argmax(0)
        names, colours = list(config.labels.names), [c.colour for c in config.labels.classes]
        figures.class_overlay(
            folder / "cover.png",
            x[0][0, 0].numpy(),
            classes.astype(np.uint8),
            names,
            colours,
            None,
            f"{source.name}: {', '.join(names[1:])}",
        )
        _readme(source, config, folder / "README.md")
        try:
            descr = ModelDescr(
                name=re.sub(r"[^A-Za-z0-9_+\- ()]", "-", f"ncseg {source.name}"),  # the spec's characters
                description=f"HAADF-STEM segmentation ({', '.join(names[1:])}) trained and cross-validated with ncseg",
                authors=[Author(name="ncseg")],
                cite=[unet, *[CiteEntry(text=text, doi=Doi(doi)) for text, doi in cite]],
                license=LicenseId("MIT"),
                documentation=FileDescr(source=folder / "README.md"),
                covers=[FileDescr(source=folder / "cover.png")],
                tags=["electron-microscopy", "haadf-stem", "nanoparticles", "semantic-segmentation", "2d"],
                inputs=[
                    InputTensorDescr(
                        id=TensorId(name),
                        axes=_axes(inputs[0], ["haadf"], module, "same" if i else "first"),
                        test_tensor=FileDescr(source=folder / "test_input.npy"),
                        preprocessing=_preprocessing(view, config),
                    )
                    for i, (name, view) in enumerate(zip(inputs, config.normalization, strict=True))
                ],
                outputs=[
                    OutputTensorDescr(
                        id=TensorId("probability"),
                        axes=_axes(inputs[0], _channels(config), module, "output"),
                        test_tensor=FileDescr(source=folder / "test_output.npy"),
                    )
                ],
                weights=WeightsDescr(
                    torchscript=TorchscriptWeightsDescr(source=script, pytorch_version=Version(torch.__version__)),
                    onnx=OnnxWeightsDescr(source=onnx, opset_version=ONNX_OPSET, parent="torchscript"),
                ),
                config={
                    "ncseg": {
                        "model_uri": source.uri,
                        "registered_model": source.name,
                        "version": source.version,
                        "cv_run_id": source.served.card.cv_run_id,
                        "threshold": config.threshold,
                        "classes": list(config.labels.names),
                    }
                },
            )
        except ValueError as err:  # pydantic's ValidationError: a name, channel or DOI the spec refuses
            raise ExportError(f"{out}: not a valid BioImage.IO description: {err}") from err
        out.parent.mkdir(parents=True, exist_ok=True)
        save_bioimageio_package(descr, output_path=out)
    return out


def served_difference(source: Source, image: np.ndarray) -> float:
    """The largest |package − served| probability on the test crop of `image`: the exported module (float32)
    against the served model in its own precision, over the whole crop (one of ncseg's tiles)."""
    served = source.served
    module = module_of(served.config, served.nets)
    crop = test_crop(image, module)
    with torch.no_grad():
        package = module(*normalised(crop, served.config))[0]
    answer = served.segment(crop, "none").probability
    return float(np.abs(package.numpy().reshape(answer.shape) - answer).max())


def build_checked(source: Source, image: np.ndarray, out: Path, cite: list[tuple[str, str]] = ()) -> str:
    """`build`, then `bioimageio test` on the package: it replaces `out` only if it passes (else ExportError with
    the test's report); returns what was checked."""
    from bioimageio.core import test_model

    partial = out.with_name(f".{out.name}.partial.zip")
    try:
        build(source, image, partial, cite)
        summary = test_model(partial)
        if summary.status != "passed":
            raise ExportError(f"{out}: the package fails `bioimageio test`:\n{summary.format()}")
        difference = served_difference(source, image)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return (
        f"bioimageio test passed (TorchScript and ONNX weights on its test image); max |package - served| "
        f"probability on that image {difference:.2e}"
    )
