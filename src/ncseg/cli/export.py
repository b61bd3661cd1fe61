"""`ncseg export`: a registered model in the formats other tools run (ncseg.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ncseg.cli.common import app, console, fail, study_params

export_app = typer.Typer(help="A registered model for Fiji (deepImageJ), ilastik, QuPath.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("bioimageio")
def export_bioimageio(
    model_uri: Annotated[str, typer.Argument(help="e.g. models:/ncseg-nc-segmenter@champion, runs:/…, a folder.")],
    out: Annotated[Path, typer.Argument(help="The package to write (.zip).")],
    image: Annotated[Path, typer.Option(help="A micrograph like its training images: test tensors and cover.")],
    cite: Annotated[
        list[str] | None, typer.Option(help="'TEXT=DOI' of a paper to cite, e.g. the training data's (repeatable).")
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option("--params", "-p", help="The study's parameters file (default: ./params.yaml where there is one)."),
    ] = None,
) -> None:
    """A BioImage.IO model package (TorchScript + ONNX, spec 0.5), checked with `bioimageio test` before it is kept."""
    from ncseg.io.images import ImageError, read_image
    from ncseg.predict import store_uri
    from ncseg.registry.lookup import ModelLookupError
    from ncseg.tracking import store

    try:
        import bioimageio.core  # noqa: F401  (the extra: checked here, before any work)
        import onnx  # noqa: F401

        from ncseg.export.bioimageio import ExportError, Source, build_checked
    except ImportError as err:
        fail(f"the BioImage.IO exporter needs its extra: pip install 'ncseg[export]' ({err.name} is missing)")
    if out.suffix != ".zip":
        fail(f"{out}: a BioImage.IO package is a .zip")
    citations = [entry.rpartition("=")[::2] for entry in cite or []]
    if bad := [c for c, (text, doi) in zip(cite or [], citations, strict=True) if not text or not doi]:
        fail(f"--cite {bad[0]!r}: expected 'TEXT=DOI'")
    project = params or Path("params.yaml")
    p = study_params(project, None) if params or project.is_file() else None
    try:
        micrograph = read_image(image)
        source = Source.load(model_uri, store_uri(p, store.project_root()))
        report = build_checked(source, micrograph.data, out, citations)
    except (ImageError, ModelLookupError, ExportError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"{err.filename or out}: cannot write the package ({err.strerror or err})")
    console.print(f"{out}: {report}", highlight=False)
