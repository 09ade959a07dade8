"""Temporary files and directories that are always removed, pass or fail.

Every one is registered when it is made; cleanup() first kills the processes the tests started and did not stop
(they may still be writing into those directories), then removes every registered path, newest first. cleanup()
runs at the end of each case (run_case.py), at interpreter exit (atexit), and before a skip's os._exit. A scoped
file (temp_file) is removed as soon as its block ends.

Everything is made under $TMPDIR, which run_case.py points at a fresh directory of the case's own and checks is
empty when the case has ended: a file made any other way fails the case."""

import atexit
import contextlib
import os
import shutil
import tempfile
import threading

_lock = threading.RLock()
_paths = []  # registered files and directories, in creation order
_processes = []  # started processes not stopped yet: objects with a kill() method


def temp_dir(prefix="weir-e2e-"):
    """A new directory under $TMPDIR, removed with everything in it by cleanup()."""
    path = tempfile.mkdtemp(prefix=prefix)
    with _lock:
        _paths.append(path)
    return path


@contextlib.contextmanager
def temp_file(data=None, prefix="weir-e2e-", suffix=""):
    """A new file under $TMPDIR holding data (bytes), if given, for the block: `with temp_file(b"x") as path:`. It is
    removed when the block ends (and by cleanup(), should the process end inside the block)."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    with _lock:
        _paths.append(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if data:
                f.write(data)
        yield path
    finally:
        remove(path)


def remove(path):
    """Removes a file or directory (registered or not) now."""
    with _lock:
        if path in _paths:
            _paths.remove(path)
    _remove(path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def track_process(proc):
    """Remembers a started process (an object with kill()) until untrack_process(); cleanup() kills it."""
    with _lock:
        _processes.append(proc)


def untrack_process(proc):
    with _lock:
        if proc in _processes:
            _processes.remove(proc)


def cleanup():
    """Kills the tracked processes, then removes every registered path. Safe to call more than once."""
    with _lock:
        procs = _processes[::-1]
        paths = _paths[::-1]
        del _processes[:]
        del _paths[:]
    for proc in procs:
        try:
            proc.kill()
        except Exception:  # noqa: BLE001 - the paths must be removed whatever a kill raised
            pass
    for path in paths:
        _remove(path)


atexit.register(cleanup)
