"""Files and folders that appear whole or not at all.

Every output of ncseg goes through here: a single file is written to a temp file beside its target and renamed
over it; a folder (an imported dataset, the augmented set, a model's fold networks) is built in a staging folder
beside its target and swapped in by renames, with the previous one kept until the new one is in place (and put
back if the swap fails). A crash, a Ctrl-C or a refused input leaves the target as it was, and no staging folder
behind; a SIGKILL (or the OOM killer, or a power cut) runs no cleanup, so these folders are named with their
owner, and the next writer beside the same target clears those whose owner is gone. `folder_lock` keeps two
processes from building or reading the same model folder at once (`ncseg train` and `ncseg register` take it).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

# What `staged_folder` leaves beside its target while it runs, after the target's name: `.staging.<random>` (the
# new folder) or `.previous` (the old one, moved aside during the swap), then `.<pid>@<host>` of the writer.
_LEFT_BEHIND = re.compile(r"\.(?P<kind>staging\.[a-z0-9_]+|previous)\.(?P<pid>\d+)@(?P<host>.+)")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; rename it over `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    Path(tmp).chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs are for sharing, like any new file
    try:
        yield Path(tmp)
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it replaces `target` whole.

    On any error (or KeyboardInterrupt) the staging folder is removed and `target` is untouched. The old
    `target` is renamed aside, not deleted, until the new one is in place, and renamed back if that fails: two
    renames apart, there is always a whole folder, old or new.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _clear_abandoned(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging.", suffix=f".{_owner()}", dir=target.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; outputs are for sharing, like any new folder
    try:
        yield staging
        _swap(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, target: Path) -> None:
    backup = target.with_name(f".{target.name}.previous.{_owner()}")
    had_target = target.exists()
    if had_target:
        target.rename(backup)
    try:
        staging.rename(target)
    except BaseException:
        if had_target:
            backup.rename(target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _clear_abandoned(target: Path) -> None:
    """Clear what writers killed inside `staged_folder` left beside `target`. An old folder moved aside while the
    new one never came in goes back first (it is the only whole copy); the rest are deleted. What a writer that
    still runs (or runs on another machine) left is its own, and stays."""
    prefix, abandoned = f".{target.name}", []
    for path in target.parent.iterdir():
        found = _LEFT_BEHIND.fullmatch(path.name[len(prefix) :]) if path.name.startswith(prefix) else None
        if found and not process_alive(int(found["pid"]), found["host"]):
            abandoned.append((found["kind"] != "previous", path))  # False sorts first: the old folder
    for is_staging, path in sorted(abandoned):
        with suppress(FileNotFoundError):  # another writer may be clearing it too
            if not is_staging and not target.exists():
                path.rename(target)
            else:
                shutil.rmtree(path)


def _owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def process_alive(pid: int, host: str) -> bool:
    """Whether process `pid` of machine `host` may still run. One of another machine (a shared file system, a team
    MLflow server) cannot be asked, so it may; a pid reused since by another process keeps what it names too."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


class FolderBusyError(RuntimeError):
    """Another process is writing the same folder."""


@contextmanager
def folder_lock(target: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on `target` (a lock file beside it), released when the block ends or the
    process dies. A second writer fails at once with a message naming the folder, instead of crossing files."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(f".{target.name}.lock")
    with lock.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise FolderBusyError(f"{target}: another ncseg process is writing it; wait for it to finish") from err
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
