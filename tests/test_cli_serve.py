"""`ncseg serve`: what it checks before handing over to `mlflow models serve`, which loads the model first and only
then finds that it cannot listen."""

from __future__ import annotations

import os
import socket

import pytest
from typer.testing import CliRunner

from ncseg.cli import app
from ncseg.serving.server import free_port

from .conftest import ROOT


def _serve(folder, port: int, monkeypatch: pytest.MonkeyPatch):
    """`ncseg serve` of a model folder (no store needed), with the exec recorded instead of run."""
    execs: list[list[str]] = []
    monkeypatch.setattr(os, "execvpe", lambda _file, command, _env: execs.append(command))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["serve", "-m", str(folder), "--port", str(port), "--params", str(ROOT / "params.yaml")]
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"}), execs


def test_a_busy_port_is_refused_naming_it_before_the_server_starts(tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result, execs = _serve(tmp_path, port, monkeypatch)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"error: 127.0.0.1:{port}: cannot listen there (Address already in use)" in result.output
    assert not execs


def test_a_free_port_is_handed_to_mlflow_models_serve(tmp_path, monkeypatch):
    port = free_port()
    result, execs = _serve(tmp_path, port, monkeypatch)
    assert result.exit_code == 0, result.output
    assert [command[-4:] for command in execs] == [["-h", "127.0.0.1", "-p", str(port)]]


def test_a_port_out_of_range_is_refused_not_wrapped(tmp_path, monkeypatch):
    """The socket layer takes 70000 as 70000 - 65536 = 4464: a server on a port nobody asked for."""
    result, execs = _serve(tmp_path, 70000, monkeypatch)
    assert result.exit_code == 2 and "Invalid value for '--port'" in result.output and not execs
