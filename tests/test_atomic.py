"""Folders appear whole or not at all: the swap and the lock."""

import os
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
