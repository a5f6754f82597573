"""One lock per cache entry, so an entry is computed once however many processes ask for it.

Many SLURM jobs of the grid (:mod:`beniful.grid`), or two notebooks on one machine, can ask for the
same model, fitted detector or repaired model at the same time. Each cached computation therefore
runs as :func:`compute_once`: look the entry up (no lock: entries are written atomically, so a
reader never sees a partial file), and on a miss take the entry's lock, look again (another process
may have just written it) and only then compute and save. The others wait on the lock and then
load what the first one wrote.

The lock is a ``filelock.FileLock`` on ``<cache>/<kind>/<key>.lock`` (an ``fcntl`` lock on POSIX:
the kernel drops it when its holder dies, so a killed job leaves no stale lock). Beside it the
holder writes ``<key>.lock.holder`` (JSON: host, pid, SLURM job id, start time), so a waiter can say
who it waits for. The cache folder must be on a file system whose locks all the processes see: a
local disk for one machine, a shared one (NFS with lockd, Lustre, GPFS) for a cluster.

Waiting is bounded by ``$BENIFUL_LOCK_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT`, one day:
a paper-profile model can train for hours); then :class:`LockTimeout` names the lock and its holder.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import filelock

from . import cache

__all__ = ["DEFAULT_TIMEOUT", "LockTimeout", "lock_timeout", "lock_path", "holder", "entry_lock", "compute_once"]

#: seconds a process waits for another one's entry before giving up (``$BENIFUL_LOCK_TIMEOUT``)
DEFAULT_TIMEOUT = 86400.0

class LockTimeout(TimeoutError):
    """Waited longer than the lock timeout for another process to finish a cache entry."""


def lock_timeout() -> float:
    """The wait limit in seconds: ``$BENIFUL_LOCK_TIMEOUT`` when set, else :data:`DEFAULT_TIMEOUT`.

    Returns:
        A positive number of seconds.

    Raises:
        ValueError: the variable is not a positive number (the bad value is named).
    """
    raw = os.environ.get("BENIFUL_LOCK_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"BENIFUL_LOCK_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return value


def lock_path(key: str, kind: str = "model") -> Path:
    """The lock file of an entry: ``<cache>/<kind>/<key>.lock`` (beside its two files).

    Args:
        key: the entry's key (:func:`beniful.cache.config_key`).
        kind: the cache sub-folder (``"model"``, ``"detector"``, ``"repaired"``).

    Returns:
        The path; the file is created on first use and left in place (an empty lock file is
        harmless, and deleting a lock file others wait on would let two holders in).
    """
    tensor_path, _ = cache.entry_paths(key, kind)
    return tensor_path.with_suffix(".lock")


def _holder_path(key: str, kind: str) -> Path:
    return lock_path(key, kind).with_suffix(".lock.holder")


def holder(key: str, kind: str = "model") -> dict | None:
    """Who holds (or last held) the entry's lock, as its holder wrote it.

    Args:
        key: the entry's key.
        kind: the cache sub-folder.

    Returns:
        ``{"host", "pid", "job", "since"}`` or ``None`` when no holder file can be read.
    """
    try:
        info = json.loads(_holder_path(key, kind).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict | None) -> str:
    if not info:
        return "holder unknown"
    job = f", SLURM job {info['job']}" if info.get("job") else ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("since", 0))))
    return f"held by pid {info.get('pid')} on {info.get('host')}{job} since {since}"


@contextmanager
def entry_lock(key: str, kind: str = "model", timeout: float | None = None,
               what: str | None = None) -> Iterator[None]:
    """Hold the entry's lock for the duration of the ``with`` block.

    When another process holds it, one line on stderr says who, then the call waits.

    Args:
        key: the entry's key.
        kind: the cache sub-folder.
        timeout: seconds to wait; ``None``: :func:`lock_timeout`.
        what: how to name the entry in messages (e.g. ``"model badnets/cifar10/seed 0"``).

    Raises:
        LockTimeout: the lock stayed held for ``timeout`` seconds; the message names the lock
            file, the holder (host, pid, SLURM job) and ``$BENIFUL_LOCK_TIMEOUT``.
    """
    timeout = lock_timeout() if timeout is None else timeout
    path = lock_path(key, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    name = what or f"{kind} {key}"
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        print(f"waiting for {name}: another process computes it ({_describe(holder(key, kind))}; lock {path})",
              file=sys.stderr, flush=True)
        try:
            lock.acquire(timeout=timeout, poll_interval=0.2)
        except filelock.Timeout:
            raise LockTimeout(f"gave up after {timeout:g} s waiting for {name}: lock {path} is "
                              f"{_describe(holder(key, kind))}; if that process is gone, its lock was released "
                              f"and this is a slow computation: raise BENIFUL_LOCK_TIMEOUT (seconds)") from None
    try:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID"),
                "since": time.time()}
        cache.atomic_write_text(_holder_path(key, kind), json.dumps(info))
        yield
    finally:
        _holder_path(key, kind).unlink(missing_ok=True)
        lock.release()


def compute_once(key: str, kind: str, load: Callable[[], Any], build: Callable[[], Any],
                 what: str | None = None) -> Any:
    """``load()`` if the entry exists, else ``build()`` under the entry's lock, once across processes.

    ``load`` runs first without the lock (a hit costs no locking), and again once the lock is held,
    since the process that held it before may have just written the entry.

    Args:
        key: the entry's key.
        kind: the cache sub-folder.
        load: returns the value from the cache, or ``None`` on a miss.
        build: computes the value and saves the entry (it runs with the lock held).
        what: how to name the entry in messages.

    Returns:
        What ``load`` or ``build`` returned.

    Raises:
        LockTimeout: as :func:`entry_lock`.
    """
    value = load()
    if value is not None:
        return value
    with entry_lock(key, kind, what=what):
        value = load()
        if value is not None:
            return value
        return build()
