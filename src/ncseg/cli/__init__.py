"""`ncseg`: the command line. Thin by design: parse arguments, load params, call the library, report. One module
per command group; importing it registers its commands on the one `app` (ncseg.cli.common), in the order --help
lists them: the study's stages first, then using a model, then the store."""

from ncseg.cli import data, study  # noqa: F401  (registers the commands)

# isort: split
from ncseg.cli import export, models, store  # noqa: F401
from ncseg.cli.common import app

__all__ = ["app"]
