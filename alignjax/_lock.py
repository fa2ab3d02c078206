"""One writer per output directory: an advisory lock that the OS releases with its process.

A run that writes into a directory (``alignjax sweep``, ``alignjax movielens``) holds an
exclusive ``fcntl.flock`` on ``DIR/.alignjax.lock`` for as long as it writes. A second
run on the same directory is refused at once, with a message naming the directory and
the holder (command, pid, host, start time, read from the lock file). The kernel drops
a ``flock`` when its process ends, however it ends, so a lock file left by a killed
run does not block a resume: it only names a process that no longer holds it.

Where the file system has no ``flock`` (some network file systems), the holder's pid is
checked instead: a live process of the same host named in the file blocks the run
(``os.kill(pid, 0)``); a dead one, or one of another host, does not.

On a clean exit the lock file is emptied (not removed: a removed file could be locked
anew by a process that opened it just before, beside a third that creates it again).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path

__all__ = ["LOCK_NAME", "OutputDirectoryBusy", "output_lock"]

LOCK_NAME = ".alignjax.lock"


class OutputDirectoryBusy(RuntimeError):
    """Another live run is writing to the output directory (a one-line message naming
    the directory and that run's process)."""


def _holder(fd) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace")
        info = json.loads(text) if text.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    if not info:
        return "a process that has not yet written its name"
    return (
        f"{info.get('command', 'alignjax')}, pid {info.get('pid', '?')} on host {info.get('host', '?')}"
        + (f", started {info['started']}" if "started" in info else "")
    )


def _alive_here(info: dict) -> bool:
    """The holder named in the file is a live process of this host (the fallback)."""
    try:
        pid = int(info.get("pid"))
    except (TypeError, ValueError):
        return False
    if info.get("host") != socket.gethostname() or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


@contextlib.contextmanager
def output_lock(out_dir, command: str):
    """Hold the exclusive lock of ``out_dir`` (created if missing) while the block runs.

    Args:
        out_dir: the output directory.
        command: how the holder is named to a refused run (e.g. ``"alignjax sweep"``).

    Raises:
        OutputDirectoryBusy: another live run holds the lock (nothing is written).
        OSError: the directory or its lock file cannot be created.

    If the directory did not exist and the block raises, the directory is removed again
    when it holds nothing but the lock file (a refused or failed run leaves no trace).
    """
    import fcntl

    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    ok = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputDirectoryBusy(
                    f"{out_dir}: another run is writing to this directory ({_describe(_holder(fd))}); "
                    "wait for it to end or choose another output directory"
                ) from None
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            info = _holder(fd)  # no flock here: fall back on the pid named in the file
            if _alive_here(info):
                raise OutputDirectoryBusy(
                    f"{out_dir}: another run is writing to this directory ({_describe(info)}); "
                    "wait for it to end or choose another output directory"
                ) from None
        me = {
            "command": command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        ok = True
        try:
            yield path
        except BaseException:
            ok = False
            raise
    finally:
        if ok or _holder(fd).get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # a clean release leaves an empty file
        os.close(fd)  # releases the flock
        if created and not ok:
            with contextlib.suppress(OSError):
                if [p.name for p in out_dir.iterdir()] == [LOCK_NAME]:
                    path.unlink()
                    out_dir.rmdir()
