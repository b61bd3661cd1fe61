"""Where a project's MLflow store is, and keeping it sound: the store's layout inside the project, which store a
command uses (the project's own, or a server), locks that make concurrent processes take turns on a SQLite store,
and relocation of a store whose project folder was copied or moved.

MLflow records artifact locations as absolute paths: an experiment's artifact_location, each run's artifact_uri,
each logged model's and model version's location. It resolves a relative location to an absolute one when the
experiment is created (mlflow/mlflow#7670) and has no command that rewrites them (mlflow/mlflow#3144, #8226). So a
moved project's store still points at the old folder: loading a model fails once the old folder is gone, and while it
still exists (a copy), new runs would write their artifacts into the *other* project. `relocate` rewrites every
location under the old root to the same place under the new one, in one SQLite transaction; `runs.setup` refuses
to log to a store that still points elsewhere and names this command.

Local store: SQLite at <project>/mlruns/mlflow.db with artifacts under <project>/mlruns/artifacts (MLflow 3
treats the plain ./mlruns file store as legacy). MLFLOW_TRACKING_URI, when set, wins, so a team server works
unchanged. Paths are absolute and resolved from the project root, also inside the copies that
`dvc exp run --temp/--queue` works in (<project>/.dvc/tmp/exps/...), so their runs land in the project's store.

Nothing here imports MLflow or `tracking.runs`.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from ncseg.config import Params

# The project's own store: <project>/mlruns/mlflow.db with artifacts under <project>/mlruns/artifacts.
STORE_DIR, DB_NAME, ARTIFACTS = "mlruns", "mlflow.db", "artifacts"
# (table, column) holding an artifact location as a file:// URI or a plain absolute path.
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


class StoreError(ValueError):
    """The store cannot be relocated (or is used from the wrong folder); the message says why and what to do."""


@dataclass(frozen=True)
class Relocation:
    old_root: Path
    new_root: Path
    rewritten: dict[str, int]  # "table.column" -> rows changed

    @property
    def total(self) -> int:
        return sum(self.rewritten.values())


def db_path(root: Path) -> Path:
    return root / STORE_DIR / DB_NAME


def local_uri(root: Path) -> str:
    """The project's own store (the default when no server is configured)."""
    return f"sqlite:///{db_path(root)}"


def artifacts_uri(root: Path) -> str:
    """Where the project's own experiments keep their artifacts: inside the project, so it can be copied whole."""
    return (root / STORE_DIR / ARTIFACTS).as_uri()


def project_root(start: Path | None = None) -> Path:
    path = (start or Path.cwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return path


def tracking_uri(params: Params, root: Path) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if params.tracking.uri:
        return params.tracking.uri
    return local_uri(root)


@contextmanager
def first_use_lock(uri: str) -> Iterator[None]:
    """One process at a time opens a SQLite store and creates the experiment. MLflow builds a new store's tables
    with alembic migrations, and two processes doing it at once break it: the later one fails with "Online
    migration expected to match one row" (seen with `dvc queue start -j 2` on a fresh project). A server's
    database is migrated once by `mlflow db upgrade` (docs/lab.md), so other URIs need no lock."""
    with _store_lock(uri, ".mlflow-init.lock"):
        yield


@contextmanager
def registry_lock(uri: str) -> Iterator[None]:
    """One registration at a time per SQLite store: a registration reads the champion, decides and writes aliases
    and tags, and two at once (the experiments of `dvc queue start -j 2`) decide on the same stale champion or
    both create the model's first tags (sqlite3.IntegrityError on registered_model_tags, seen in CI). A lab's
    server is shared by machines that no file lock reaches; there `ncseg register` runs in one place (docs/lab.md)."""
    with _store_lock(uri, ".mlflow-registry.lock"):
        yield


@contextmanager
def _store_lock(uri: str, name: str) -> Iterator[None]:
    """A blocking lock file beside a SQLite store; nothing for other URIs."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    folder = Path(uri.removeprefix("sqlite:///")).parent
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def recorded_root(root: Path) -> Path | None:
    """The project folder the store was made in: the one whose mlruns/artifacts the experiments point at (None when
    no experiment has a local location, e.g. an empty store)."""
    roots = _recorded_roots(root)
    if len(roots) > 1:
        listed = ", ".join(str(r) for r in sorted(roots))
        raise StoreError(f"{db_path(root)}: experiments point at several project folders ({listed}); pass --from")
    return next(iter(roots), None)


def _recorded_roots(root: Path) -> set[Path]:
    suffix = f"/{STORE_DIR}/{ARTIFACTS}"
    with closing(_connect(root)) as db:
        paths = [_as_path(location) for (location,) in db.execute("SELECT artifact_location FROM experiments")]
    return {Path(p.removesuffix(suffix)) for p in paths if p is not None and p.endswith(suffix)}


def relocate(root: Path, old_root: Path | None = None) -> Relocation:
    """Rewrite every artifact location under `old_root` (default: the folder the store records) to `root`, all or
    nothing (one transaction)."""
    root = root.resolve()
    old = recorded_root(root) if old_root is None else _checked_old_root(root, old_root)
    if old is None:
        raise StoreError(f"{db_path(root)}: no experiment has a local artifact location; nothing to relocate")
    if old == root:
        return Relocation(old, root, {})
    with closing(_connect(root)) as db, db:
        counts = {f"{t}.{c}": _rewrite(db, t, c, old, root) for t, c in LOCATION_COLUMNS}
        counts["datasets.dataset_source"] = _rewrite_sources(db, old, root)
    return Relocation(old, root, counts)


def _checked_old_root(root: Path, old_root: Path) -> Path:
    """--from must be a folder the experiments point at. Locations are rewritten by prefix, so an ancestor of the
    old folder matched them all too, and /old/project/mlruns/… became /new/project/mlruns/…, inside the new one."""
    roots = _recorded_roots(root)
    if old_root not in roots:
        listed = ", ".join(str(r) for r in sorted(roots)) or "no local folder"
        raise StoreError(
            f"--from {old_root}: the store's experiments point at {listed}, not at it; pass the folder the project "
            "was copied or moved from (or leave --from out)"
        )
    return old_root


def check_readable(tracking_uri: str) -> None:
    """A project-local store that exists must be a sound SQLite database. MLflow opens it deep inside SQLAlchemy,
    so a truncated or overwritten mlflow.db was a traceback in whichever command touched it first; every command
    that opens the store (tracking.setup, the model lookup, relocate) checks it here first. Servers are theirs."""
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("sqlite:///") and path.is_file():
        _check_database(path)


def _check_database(path: Path) -> None:
    """quick_check reads every page (milliseconds for a project's store), so truncation is found, not only a
    damaged header."""
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            found = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
    except sqlite3.OperationalError as err:  # locked, unreadable: not (known to be) damaged
        raise StoreError(f"{path}: cannot open the MLflow store ({err})") from err
    except sqlite3.DatabaseError as err:
        found = [str(err)]
    if found != ["ok"]:
        raise StoreError(
            f"{path}: not a readable SQLite database ({found[0]}); restore it (with the rest of {path.parent}) from "
            "a backup, or move it aside to start an empty store"
        )


def check_location(artifact_location: str, root: Path) -> None:
    """Refuse a project-local experiment whose artifacts live outside this project: the folder was copied or moved
    and the store not relocated, so new artifacts would land in the other folder."""
    expected = artifacts_uri(root)
    if artifact_location.startswith("file://") and artifact_location != expected:
        raise StoreError(
            f"the MLflow store in {root / STORE_DIR} keeps its artifacts at {artifact_location}, not in this project "
            f"(was the folder copied or moved?): run `ncseg store relocate` in {root} first"
        )


def _connect(root: Path) -> sqlite3.Connection:
    path = db_path(root)
    if not path.is_file():
        raise StoreError(f"no MLflow store at {path}: run from the project folder (where `dvc repro` made mlruns/)")
    _check_database(path)
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"datasets", *(t for t, _ in LOCATION_COLUMNS)} - tables
    if missing:
        db.close()
        raise StoreError(f"{path} is not an MLflow 3 store (no {', '.join(sorted(missing))} table)")
    return db


def _as_path(location: str) -> str | None:
    """The absolute path of a local location (`file:///…` or `/…`); None for remote ones (s3://, models:/, …)."""
    if location.startswith("file://"):
        return unquote(urlparse(location).path)
    return location if location.startswith("/") else None


def _rewrite(db: sqlite3.Connection, table: str, column: str, old: Path, new: Path) -> int:
    """Both spellings MLflow uses, `file:///old/…` and `/old/…` (the Default experiment); the old root itself or a
    path below it, so /old-project is not taken for /old."""
    changed = 0
    for before, after in ((old.as_uri(), new.as_uri()), (str(old), str(new))):
        changed += db.execute(
            f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} = ? OR substr({column}, 1, ?) = ?",
            (after, len(before) + 1, before, len(before) + 1, f"{before}/"),
        ).rowcount
    return changed


def _rewrite_sources(db: sqlite3.Connection, old: Path, new: Path) -> int:
    """Datasets name their file (the augmented manifest) as JSON `{"uri": "file:///…"}`."""
    changed = 0
    prefix = f"{old.as_uri()}/"
    for key, source in db.execute("SELECT dataset_uuid, dataset_source FROM datasets").fetchall():
        try:
            parsed = json.loads(source)
        except (TypeError, json.JSONDecodeError):
            continue
        uri = parsed.get("uri") if isinstance(parsed, dict) else None
        if isinstance(uri, str) and uri.startswith(prefix):
            parsed["uri"] = f"{new.as_uri()}/{uri.removeprefix(prefix)}"
            db.execute("UPDATE datasets SET dataset_source = ? WHERE dataset_uuid = ?", (json.dumps(parsed), key))
            changed += 1
    return changed
