"""What every `ncseg` command shares: the app and its groups, the console, the common options, loading params and
failing with one line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from ncseg.config import ConfigError, Params, load_params

app = typer.Typer(
    help="Find nanocrystals in HAADF-STEM images: data, training, registry, prediction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Demo data, your own data, and the study's augmentation.", no_args_is_help=True)
app.add_typer(data_app, name="data")
store_app = typer.Typer(help="The project's local MLflow store (mlruns/).", no_args_is_help=True)
app.add_typer(store_app, name="store")
console = Console(stderr=True)

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="The study's parameters file.")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-S", help="Override a parameter, e.g. -S train.epochs=2 (repeatable).")
]
ForegroundOption = Annotated[str | None, typer.Option(help="Masks are label maps; these labels are NC, e.g. '1,2'.")]
PixelSizeOption = Annotated[float | None, typer.Option(help="Pixel size in nm, where files carry none.")]


def study_params(path: Path, overrides: list[str] | None) -> Params:
    try:
        return load_params(path, overrides)
    except ConfigError as err:
        fail(str(err))


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
