"""One writer per output directory (alignjax._lock): a live run's directory is refused
at once, with one line naming the directory and the holder; a stale lock is not."""

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from alignjax._lock import LOCK_NAME, OutputDirectoryBusy, output_lock
from alignjax.cli import main

SWEEP = """
instances = 2
[[study]]
game = "persuasion"
family = "hull"
K = 2
Y = 3
A = 2
"""

HOLDER = """
import sys, time
from alignjax._lock import output_lock
with output_lock(sys.argv[1], "test holder"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path / "out"."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield out, proc
    finally:
        proc.kill()
        proc.wait()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _refusal(err, out, pid):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert str(out) in line and f"pid {pid}" in line and socket.gethostname() in line, line
    assert "another run is writing to this directory" in line
    return line


def test_sweep_refused_while_another_run_writes(holder, tmp_path, capsys):
    out, proc = holder
    before = sorted(p.name for p in out.iterdir())
    cfg = tmp_path / "c.toml"
    cfg.write_text(SWEEP)
    t0 = time.perf_counter()
    code = main(["sweep", str(cfg), "--out", str(out), "--quiet"])
    elapsed = time.perf_counter() - t0
    _, err = capsys.readouterr()
    assert code == 2
    _refusal(err, out, proc.pid)
    assert "test holder" in err
    assert sorted(p.name for p in out.iterdir()) == before == [LOCK_NAME]  # nothing written
    assert elapsed < 30  # at once: before any game is compiled or solved


def test_movielens_refused_while_another_run_writes(holder, tmp_path, capsys):
    out, proc = holder
    data = tmp_path / "no-data-needed"  # the lock is taken before the data are read
    code = main(["movielens", "--data", str(data), "--out", str(out), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2
    _refusal(err, out, proc.pid)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_stale_lock_of_a_dead_process_does_not_block(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pid = _dead_pid()
    stale = {"command": "alignjax sweep", "pid": pid, "host": socket.gethostname(), "started": "x"}
    (out / LOCK_NAME).write_text(json.dumps(stale))
    with output_lock(out, "alignjax sweep") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert (out / LOCK_NAME).read_text() == ""  # a clean release empties the file


def test_lock_released_after_the_block_and_refused_inside(tmp_path):
    out = tmp_path / "out"
    with output_lock(out, "first"):
        with pytest.raises(OutputDirectoryBusy, match=f"pid {os.getpid()}"):
            with output_lock(out, "second"):
                pass
    with output_lock(out, "third"):  # released: free again
        pass


def test_failed_run_removes_the_directory_it_created(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(ValueError, match="boom"):
        with output_lock(out, "x"):
            raise ValueError("boom")
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("")
    with pytest.raises(ValueError, match="boom"):
        with output_lock(out, "x"):
            raise ValueError("boom")
    assert (out / "keep.txt").exists()  # a directory it did not create stays


@pytest.mark.parametrize("alive", [True, False])
def test_without_flock_the_pid_decides(tmp_path, monkeypatch, alive):
    """Where the file system has no flock (ENOLCK), a live pid of this host named in the
    lock file blocks, a dead one does not."""
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) if alive else None
    pid = proc.pid if alive else _dead_pid()
    (out / LOCK_NAME).write_text(json.dumps({"command": "other", "pid": pid, "host": socket.gethostname()}))
    monkeypatch.setattr(fcntl, "flock", no_flock)
    try:
        if alive:
            with pytest.raises(OutputDirectoryBusy, match=f"pid {pid} on host"):
                with output_lock(out, "x"):
                    pass
        else:
            with output_lock(out, "x"):
                pass
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()

