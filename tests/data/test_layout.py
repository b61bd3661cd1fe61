"""The dataset folder layout has one owner: what every dataset writer makes is the layout, and no other module of
the package spells it."""

import ast
from pathlib import Path

import numpy as np
import tifffile

from ncseg.data import layout
from ncseg.data.importer import import_dataset
from ncseg.data.layout import CLASSES, GROUPS, IMAGES, MANIFEST, MASKS, PARTICLES, Entry
from ncseg.data.rotations import augment

PACKAGE = Path(layout.__file__).parents[1]  # src/ncseg


def test_what_synth_import_and_augment_write_is_the_layout(small_raw, small_params, tmp_path):
    """`--force` replaces only a folder holding the layout's entries, so every writer's folder must be one; and the
    readers find each image, mask and class map where the path helpers say."""
    names = sorted(p.stem for p in (small_raw / IMAGES).iterdir())
    (tmp_path / "slices.csv").write_text("name,slice\n" + "".join(f"{n},s{i % 2}\n" for i, n in enumerate(names)))
    (tmp_path / "labels").mkdir()
    for name in names:
        tifffile.imwrite(tmp_path / "labels" / f"{name}.tif", np.ones((128, 128), np.uint8))
    raw, augmented = tmp_path / "raw", tmp_path / "augmented"
    import_dataset(
        small_raw / IMAGES,
        small_raw / MASKS,
        raw,
        groups=tmp_path / "slices.csv",
        group_column="slice",
        classes=tmp_path / "labels",
    )
    entries = augment(raw, augmented, small_params.augment, small_params.seed)
    for folder, holds in (
        (small_raw, {IMAGES, MASKS, PARTICLES}),
        (raw, {IMAGES, MASKS, CLASSES, GROUPS}),
        (augmented, {IMAGES, MASKS, CLASSES, MANIFEST}),
    ):
        assert {p.name for p in folder.iterdir()} == holds <= set(layout.DATASET_ENTRIES), folder
    for e in entries:
        paths = layout.image_path(augmented, e.name), layout.mask_path(augmented, e.name)
        assert all(p.is_file() for p in (*paths, layout.class_map_path(augmented, e.name))), e
    assert {e.group for e in entries} == {"s0", "s1"}


def test_the_manifest_reads_back_as_written(tmp_path):
    entries = [Entry("a", "a", "slice 1", 0), Entry("a_rot90", "a", "slice 1", 90), Entry("b", "b", "b", 0)]
    layout.write_manifest(tmp_path, entries)
    assert layout.read_manifest(tmp_path) == entries
    assert (tmp_path / MANIFEST).read_text().splitlines()[0] == "name,source,group,rotation_deg"


# `ncseg predict` writes a folder of its own (masks/ beside overlays/ and particles/): not a dataset.
OTHER_LAYOUTS = ("predict",)


def _spellings(path: Path) -> list[str]:
    """Where a module names a dataset file, or builds a path into a dataset folder, by its literal name."""
    files, folders = {GROUPS, MANIFEST, PARTICLES}, {IMAGES, MASKS, CLASSES}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and node.value in files:
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _literal(node.right) in folders:
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: / {_literal(node.right)!r}")
    return found


def _literal(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def test_only_the_layout_module_spells_the_dataset_layout():
    modules = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(layout.__file__) and not path.relative_to(PACKAGE).parts[0].startswith(OTHER_LAYOUTS)
    ]
    found = [line for path in modules for line in _spellings(path)]
    assert not found, "ask ncseg.data.layout instead:\n" + "\n".join(found)
