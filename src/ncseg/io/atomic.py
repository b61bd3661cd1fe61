"""Files and folders that appear whole or not at all.

Every output of ncseg goes through here: a single file is written to a temp file beside its target and renamed
over it; a folder (an imported dataset, the augmented set, a model's fold networks) is built in a staging folder
beside its target and swapped in by renames, with the previous one kept until the new one is in place (and put
back if the swap fails). A crash, a Ctrl-C or a refused input leaves the target as it was, and no staging folder
behind. `folder_lock` keeps two processes from building or reading the same model folder at once (`ncseg train`
and `ncseg register` take it).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging.", dir=target.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; outputs are for sharing, like any new folder
    try:
        yield staging
        _swap(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, target: Path) -> None:
    backup = target.with_name(f".{target.name}.previous.{os.getpid()}")
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
