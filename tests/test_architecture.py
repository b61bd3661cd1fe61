"""The house's layers, enforced rather than hoped for: the import-linter contracts in pyproject.toml hold, a
deliberate upward import breaks them (so the check can fail), no module imports itself back through others, and
the core imports without the optional extras."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import grimp
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
GUI = ("napari", "pyqt", "pyside", "qtpy", "magicgui", "vispy", "superqt")
SITE = Path(grimp.__file__).resolve().parents[1]  # the environment's site-packages, where import-linter is


def _lint(src: Path) -> subprocess.CompletedProcess:
    """import-linter on the package found in `src`. Without the site module (-S) the editable install's path hook
    does not run, so the `ncseg` analysed is the one in `src`, not the working tree's."""
    code = "import sys; from importlinter.cli import lint_imports_command as lint; sys.exit(lint())"
    argv = [sys.executable, "-S", "-c", code, str(ROOT / "pyproject.toml"), "--no-cache"]
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{SITE}"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold():
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("module", "line", "reported"),
    [
        ("config.py", "import ncseg.cli", "ncseg.config is not allowed to import ncseg.cli"),  # upward
        ("predict/outputs.py", "import mlflow", "ncseg.predict.outputs -> mlflow"),
        ("tracking/store.py", "import ncseg.tracking.runs", "ncseg.tracking.store is not allowed to import"),
        ("predict/segment.py", "import qtpy", "ncseg.predict.segment -> qtpy"),
        ("napari/layers.py", "import napari", "ncseg.napari.layers -> napari"),
    ],
)
def test_a_violation_breaks_the_contracts(tmp_path, module, line, reported):
    """The contracts are not vacuous: an upward import, MLflow outside tracking/runs, registry and serving, and the
    store reaching into runs are each reported, by name."""
    shutil.copytree(ROOT / "src" / "ncseg", tmp_path / "ncseg", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "ncseg" / module).open("a") as fh:
        fh.write(f"\n{line}  # noqa: E402, F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and reported in result.stdout, result.stdout[-2000:]


def test_no_module_imports_itself_back_through_others():
    graph = grimp.build_graph("ncseg")
    cycles = {
        tuple(sorted((module, imported)))
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    }
    assert not cycles, f"import cycles: {sorted(cycles)}"


def test_the_core_imports_without_the_optional_extras():
    """`pip install ncseg` without [team], [formats], [export] or [napari]: the package, its CLI, the served model
    and the napari plugin's headless half (what the widget calls) still import."""
    blocked = ["psycopg", "boto3", "dvc_s3", "rsciio", "napari", "qtpy", "PyQt6", "magicgui", "bioimageio"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # an import of it raises ImportError, as where it is not installed\n"
        "import ncseg.cli, ncseg.serving.model, ncseg.training.cv\n"
        "import ncseg.napari.actions, ncseg.napari.reader\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _closure(requirement_names: list[str]) -> set[str]:
    """The installed distributions these requirements pull in, transitively, extras not taken."""
    seen: set[str] = set()
    todo = list(requirement_names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        for line in needs:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_the_core_install_pulls_no_gui():
    """`make repro` installs ncseg without extras: nothing it depends on, however deep, is napari or Qt."""
    core = [Requirement(line).name for line in requires("ncseg") or [] if "extra ==" not in line]
    pulled = _closure(core)
    assert {"torch", "mlflow", "dvc"} <= pulled and "vispy" in _closure(["napari"])  # the walk finds what is there
    gui = {name for name in pulled if name.startswith(GUI)}
    assert not gui, sorted(gui)
