"""Group manifests: which specimen region each image shows, so cross-validation keeps a region in one fold.

Two kinds: the microscopist's table given to `data import --groups` (any CSV with a `name` column and a group
column, checked line by line, every mistake named with its line), and the raw folder's own groups.csv
(name,group) that import and add write and augment reads.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ncseg.data.layout import GROUP, GROUPS
from ncseg.io.tables import write_csv


def read_group_table(path: Path, column: str, names: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """(group per image name, problems, warnings) from a CSV with a `name` column and a group column (e.g. the
    shared dataset's `source_slice`), each problem and warning named with the file and its line.

    Every imported image needs a row with a non-empty group, once (identical repeats are harmless): a typo that
    leaves an image in a group of its own would let its slice neighbours cross folds. Rows for images that are not
    imported are only warned about: a dataset-wide manifest used for a subset is normal, and such a row cannot put
    an imported image in a wrong group (a misspelt name is caught as the imported image's missing row).
    """
    try:
        header, rows = _csv_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return {}, [f"{path}: cannot read group manifest ({getattr(err, 'strerror', None) or err})"], []
    if "name" not in header or column not in header:
        found = ", ".join(header) or "no header"
        return {}, [f"{path}: group manifest needs columns 'name' and {column!r} (found: {found})"], []
    groups: dict[str, str] = {}
    first_line: dict[str, int] = {}  # where each name got its group, so a conflict names both lines
    problems = []
    for line, row in rows:
        name, group = (row.get("name") or "").strip(), (row.get(column) or "").strip()
        where = f"{path}, line {line}"
        if not name and not group:
            continue  # a blank row, as spreadsheets save them (",,")
        if not name:
            problems.append(f"{where}: group {group!r} for an empty 'name'")
        elif not group:
            problems.append(f"{where}: image {name!r} has an empty {column!r}")
        elif name not in groups:
            groups[name], first_line[name] = group, line
        elif groups[name] != group:
            problems.append(
                f"{where}: image {name!r} is in {groups[name]!r} and in {group!r} (line {first_line[name]})"
            )
    named = {(row.get("name") or "").strip() for _, row in rows}
    problems += [f"{path}: no group for image {n!r} (no row names it)" for n in names if n not in named]
    return groups, problems, _unused_rows(path, first_line, names)


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header (stripped, so 'name, slice' works) and each row with its line in the file, blank lines and quoted
    line breaks counted. utf-8-sig drops the byte-order mark Excel writes, which would rename 'name'."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [field.strip() for field in reader.fieldnames or []]
        reader.fieldnames = header
        return header, [(reader.line_num, row) for row in reader]


def _unused_rows(path: Path, first_line: dict[str, int], names: list[str]) -> list[str]:
    """Rows for images not imported: fine for a dataset-wide manifest used for a subset, a typo otherwise."""
    unused = sorted(set(first_line) - set(names), key=first_line.__getitem__)
    if not unused:
        return []
    shown = first_few([f"{n!r} (line {first_line[n]})" for n in unused])
    return [f"{path}: {len(unused)} row(s) name images that are not imported: {shown}"]


def first_few(items: list[str]) -> str:
    """A list that may be long, shown in one line of a message: the first five and how many more."""
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return ", ".join(items[:5]) + more


def read_groups(raw: Path) -> dict[str, str]:
    """The group of each image of a raw folder; {} where it has no groups.csv (each image is then its own group)."""
    path = raw / GROUPS
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["name"]: row[GROUP] for row in csv.DictReader(fh)}


def write_groups(raw: Path, group_of: dict[str, str]) -> None:
    """groups.csv of a raw folder, one row per image in `group_of`'s order."""
    write_csv(raw / GROUPS, [{"name": n, GROUP: g} for n, g in group_of.items()], ["name", GROUP])
