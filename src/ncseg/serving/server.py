"""The served model as a process: the exact `mlflow models serve` command `ncseg serve` runs, and a loopback server
that the tests, the benchmarks and a user's script can start, wait for and always stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class ServerError(RuntimeError):
    """The model server exited or did not answer in time; the message says where its log is."""


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """`--env-manager local`: the server runs in this environment (no conda/virtualenv build, nothing downloaded)."""
    return ["mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", host, "-p", str(port)]


def server_env(tracking_uri: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the server needs: the store to resolve models:/ URIs in, and this Python's bin/ first on
    PATH, because `mlflow models serve` execs `uvicorn` from PATH."""
    env = dict(os.environ if base is None else base)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port (taken, or not an address of this host), or None. Bound once
    as uvicorn binds it (SO_REUSEADDR: a port in TIME_WAIT is free); `ncseg serve` asks before exec'ing the server,
    which would load the model first and then fail with a traceback. Another process may still take it between."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as err:  # socket.gaierror too: a host name that does not resolve
        return err.strerror or str(err)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(model_uri: str, env: dict[str, str], cwd: Path, log: IO[str], startup_s: float = 180) -> Iterator[str]:
    """Serve `model_uri` on a free loopback port; yield its URL once /ping answers; stop it (and its workers) on
    exit, also when the block fails."""
    port = free_port()
    process = subprocess.Popen(
        serve_command(model_uri, "127.0.0.1", port),
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: uvicorn workers stop with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_ping(process, url, startup_s, log.name)
        yield url
    finally:
        stop_process(process)


def _wait_for_ping(process: subprocess.Popen, url: str, startup_s: float, log_name: str) -> None:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"the model server exited with code {process.returncode}; see {log_name}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise ServerError(f"the model server did not answer /ping within {startup_s:.0f} s; see {log_name}")


def stop_process(process: subprocess.Popen) -> None:
    """Stop a server started in its own process group (`start_new_session=True`) and every worker it spawned:
    SIGTERM, then SIGKILL after 20 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
