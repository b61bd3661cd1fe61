"""The label set: the one place that says what the classes of a study are.

A class has an id (its place in the list; 0 is the background), a name, a colour, and a kind: *particles* are
split into instances and measured in nm (the study's NCs, Pt on a support), a *region* is measured by its area
only (a support, the background). A binary study is a label set of a background and one particle class (its
weight and kind are not used: one sigmoid output, the study's loss and threshold); with more classes the code asks
this object how many network outputs it needs, the loss weights, which classes are particles, and what to call
each class in metrics and files (nnU-Net's `LabelManager` is the model: label semantics have one owner).

Class maps on disk hold the ids (uint8, as the importer writes them); binary masks (ImageJ 0/255) are the label
set's foreground.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

Kind = Literal["particles", "region"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")  # a column, file and MLflow-metric name as it is
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class LabelClass(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Kind
    colour: str  # "#rrggbb": overlays, figures, the class map's lookup table
    weight: float = Field(default=1.0, gt=0)  # its weight in a multi-class loss (rare classes may need more)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"label name {name!r}: lower-case letters, digits, '-' and '_', starting with a letter")
        return name

    @field_validator("colour")
    @classmethod
    def _hex_colour(cls, colour: str) -> str:
        if not _COLOUR.match(colour):
            raise ValueError(f"label colour {colour!r}: expected #rrggbb")
        return colour.lower()


class LabelSet(RootModel[tuple[LabelClass, ...]]):
    """The classes in id order. Two classes: one sigmoid output (the study's binary U-Net, unchanged); more: one
    softmax output per class."""

    model_config = ConfigDict(frozen=True)
    root: tuple[LabelClass, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _shape(self) -> LabelSet:
        names = [c.name for c in self.root]
        if len(set(names)) != len(names):
            raise ValueError(f"labels: a name is listed twice ({', '.join(names)})")
        if self.root[0].kind != "region":
            raise ValueError(f"labels: class 0 ({self.root[0].name}) is the background and must be a region")
        if len(self.root) > 255:
            raise ValueError("labels: at most 255 classes (class maps are uint8)")
        return self

    @classmethod
    def binary(cls, name: str = "nanocrystal", colour: str = "#ffd700") -> LabelSet:
        """A background and one particle class: the label set of a 0/255 mask."""
        return cls((LabelClass(name="background", kind="region", colour="#000000"), _particles(name, colour)))

    @property
    def classes(self) -> tuple[LabelClass, ...]:
        return self.root

    @property
    def is_binary(self) -> bool:
        return len(self.root) == 2

    @property
    def n_outputs(self) -> int:
        """Network output channels: 1 (a sigmoid) for a binary set, one softmax channel per class otherwise."""
        return 1 if self.is_binary else len(self.root)

    @property
    def foreground(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.root)))

    @property
    def particle_ids(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.root) if c.kind == "particles")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.root)

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(c.weight for c in self.root)

    def check_map(self, class_map: np.ndarray, where: str) -> None:
        """A class map may hold only this set's ids; `where` (a file) is named if not."""
        top = int(class_map.max()) if class_map.size else 0
        if top >= len(self.root):
            raise ValueError(
                f"{where}: holds class {top}, but the label set has {len(self.root)} classes "
                f"({', '.join(f'{i}={n}' for i, n in enumerate(self.names))})"
            )


def _particles(name: str, colour: str) -> LabelClass:
    return LabelClass(name=name, kind="particles", colour=colour)
