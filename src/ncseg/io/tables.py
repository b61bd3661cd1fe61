"""Tables and records written atomically (temp file, then rename): a crash never leaves half a CSV behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ncseg.io.atomic import atomic_path


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> None:
    """`fields` names the columns, so that a table with no rows still has its header."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
