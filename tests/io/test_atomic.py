"""Folders appear whole or not at all: the swap and the lock."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ncseg.io.atomic import FolderBusyError, folder_lock, staged_folder


def _folder(path: Path, content: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "file.txt").write_text(content)
    return path


def test_a_finished_folder_replaces_the_old_one_whole_and_is_shared_like_any_folder(tmp_path):
    target = _folder(tmp_path / "models", "old")
    (target / "stale.pt").write_text("from an earlier run")
    with staged_folder(target) as staging:
        (staging / "file.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["file.txt"] and (target / "file.txt").read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = _folder(tmp_path / "models", "old")
    real_rename = Path.rename

    def failing(self, destination):
        if ".staging." in self.name:
            raise OSError("disk went away")
        return real_rename(self, destination)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk went away"), staged_folder(target) as staging:
        (staging / "file.txt").write_text("new")
    assert (target / "file.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_a_second_writer_is_turned_away_while_the_first_holds_the_lock(tmp_path):
    folder = tmp_path / "models" / "unet4"
    busy = pytest.raises(FolderBusyError, match="unet4: another ncseg process")
    with folder_lock(folder), busy, folder_lock(folder):
        pass
    with folder_lock(folder):
        pass  # released


# A writer that stops at `stop` inside `staged_folder`, prints the folder it leaves beside the target, and waits.
STOPPED_WRITER = """
import sys, time
from pathlib import Path
from ncseg.io import atomic
target, stop = Path(sys.argv[1]), sys.argv[2]
rename = Path.rename

def stopped(left, **_):
    print(left, flush=True)
    time.sleep(60)

def rename_and_stop(self, destination):
    moved = rename(self, destination)
    if self == target:
        stopped(destination)
    return moved

if stop == "after the swap":
    atomic.shutil.rmtree = stopped  # the new folder is in place, the old one not yet deleted
if stop == "between the renames":
    Path.rename = rename_and_stop  # the old folder moved aside, the new one not yet in
with atomic.staged_folder(target) as staging:
    (staging / "file.txt").write_text("from the killed writer")
    if stop == "while writing":
        stopped(staging)
"""


def _stopped_writer(target: Path, stop: str) -> tuple[subprocess.Popen, Path]:
    writer = subprocess.Popen(
        [sys.executable, "-c", STOPPED_WRITER, str(target), stop], stdout=subprocess.PIPE, text=True
    )
    return writer, Path(writer.stdout.readline().strip())


def _kill(writer: subprocess.Popen) -> None:
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    writer.stdout.close()


@pytest.mark.parametrize(
    ("stop", "then"),
    [("while writing", "old"), ("between the renames", "old"), ("after the swap", "from the killed writer")],
)
def test_the_next_writer_clears_what_a_killed_writer_left_and_keeps_a_live_writers_staging(tmp_path, stop, then):
    """SIGKILL runs no cleanup: a killed writer's staging (or old) folder stayed beside the target for good, up to
    167 MB. The next writer removes it, puts an old folder moved aside back first (a killed swap must not lose the
    data), and leaves alone the staging folder of a writer that still runs."""
    target = _folder(tmp_path / "raw", "old")
    live, live_staging = _stopped_writer(target, "while writing")
    killed, left = _stopped_writer(target, stop)
    try:
        _kill(killed)
        assert left.is_dir()
        with staged_folder(target) as staging:
            assert (target / "file.txt").read_text() == then
            (staging / "file.txt").write_text("new")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["raw", live_staging.name])
        assert (target / "file.txt").read_text() == "new"
    finally:
        _kill(live)
