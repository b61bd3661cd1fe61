"""`ncseg store …`: the project's local MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ncseg.cli.common import (
    console,
    fail,
    store_app,
)


@store_app.command("relocate")
def store_relocate(
    old_root: Annotated[
        Path | None, typer.Option("--from", help="The folder the store was made in (default: the one it records).")
    ] = None,
) -> None:
    """After copying or moving the project folder: point the store's artifact locations (experiments, runs, logged
    models, model versions, datasets) at this folder instead of the old one."""
    from ncseg.tracking.store import StoreError, project_root, relocate

    try:
        done = relocate(project_root(), old_root.resolve() if old_root else None)
    except StoreError as err:
        fail(str(err))
    if done.old_root == done.new_root:
        console.print(
            f"nothing to rewrite: the store already points at {done.new_root}", highlight=False, soft_wrap=True
        )
        return
    if done.total == 0:
        fail(f"no location in the store is under {done.old_root}")
    counts = ", ".join(f"{n} {column}" for column, n in done.rewritten.items() if n)
    console.print(f"{done.old_root} -> {done.new_root}: {counts}", highlight=False, soft_wrap=True)
