"""On-disk cache of trained models, keyed by their full configuration.

An entry is two files in the cache folder (:func:`beniful.paths.cache_root`: ``$BENIFUL_CACHE``,
else ``<checkout>/.cache``, else ``~/.cache/beniful``):
``<key>.safetensors`` (tensors only: no pickle, nothing executable) and ``<key>.json`` (the
configuration, metrics and the SHA-256 of the tensor file). Both are written to a temp file and
renamed, tensors first, so an entry exists only once it is complete. A tampered, truncated or
unreadable entry is reported with its path and treated as missing (so it is rebuilt).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from . import paths

__all__ = ["cache_dir", "config_key", "save", "load", "atomic_write_bytes", "atomic_write_text", "sha256_file",
           "CacheCorruptWarning"]

FORMAT_VERSION = 1


class CacheCorruptWarning(UserWarning):
    """A cache entry failed its integrity check and will be rebuilt."""


def cache_dir() -> Path:
    """The cache folder (:func:`beniful.paths.cache_root`)."""
    return paths.cache_root()


def canonical_json(obj: Any) -> str:
    """One JSON text per value, whatever the dict order, so equal configurations hash equally.

    Args:
        obj: a JSON-able value; keys are sorted, separators have no spaces, and anything JSON
            cannot encode (a ``Path``, a dtype) is written as its ``str``.

    Returns:
        The compact, key-sorted JSON text.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_key(config: dict[str, Any]) -> str:
    """Stable 20-hex-digit key of a JSON-able configuration (order-independent).

    The cache format version is folded in, so a format change gives every entry a new key.

    Args:
        config: the full configuration of what is cached (see ``canonical_json``).

    Returns:
        The first 20 hex digits of the SHA-256 of the canonical JSON.
    """
    return hashlib.sha256(canonical_json({"v": FORMAT_VERSION, **config}).encode()).hexdigest()[:20]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks so a large tensor file is never held in memory twice.

    Args:
        path: the file to hash.

    Returns:
        The hex digest (64 characters).

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it and rename it over ``path``.

    A reader (or a crash) never sees a half-written file; the parent folders are created.

    Args:
        path: the destination file.
        data: its full new content.
    """
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Text form of :func:`atomic_write_bytes` (UTF-8).

    Args:
        path: the destination file.
        text: its full new content.
    """
    atomic_write_bytes(path, text.encode())


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    """Save tensors as a safetensors file, atomically (as :func:`atomic_write_bytes`).

    Args:
        path: the destination ``.safetensors`` file.
        tensors: name -> tensor; each is detached, moved to the CPU and made contiguous
            first (safetensors needs that), so the caller's tensors are left untouched.
    """
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(clean, tmp))


def entry_paths(key: str, kind: str = "model") -> tuple[Path, Path]:
    """Where an entry's two files live: ``<cache>/<kind>/<key>.safetensors`` and ``.json``.

    Args:
        key: the entry's key (:func:`config_key`).
        kind: the sub-folder, one per kind of cached object (``"model"`` for trained models).

    Returns:
        ``(tensor_path, meta_path)``; neither need exist.
    """
    d = cache_dir() / kind
    return d / f"{key}.safetensors", d / f"{key}.json"


def save(key: str, tensors: dict[str, Tensor], meta: dict[str, Any], kind: str = "model") -> Path:
    """Write an entry atomically; returns the tensor file's path.

    The tensors go first and the metadata (with their SHA-256) last, so an interrupted save
    leaves no entry that :func:`load` would accept.

    Args:
        key: the entry's key (:func:`config_key`).
        tensors: the tensors to store (a model's ``state_dict``, for instance).
        meta: JSON-able configuration and metrics; ``key``, ``format`` and ``sha256`` are added.
        kind: the sub-folder (see ``entry_paths``).

    Returns:
        The path of the ``.safetensors`` file written.
    """
    tpath, mpath = entry_paths(key, kind)
    atomic_save_tensors(tpath, tensors)
    meta = {**meta, "key": key, "format": FORMAT_VERSION, "sha256": sha256_file(tpath)}
    atomic_write_text(mpath, json.dumps(meta, indent=1, sort_keys=True, default=str))
    return tpath


def _corrupt(path: Path, why: str) -> None:
    warnings.warn(f"cache entry {path} is corrupt ({why}); it will be rebuilt", CacheCorruptWarning, stacklevel=3)


def load(key: str, kind: str = "model") -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """Return ``(tensors, meta)`` for a verified entry, or ``None`` when missing or corrupt.

    A corrupt entry (unreadable metadata, a hash mismatch, unreadable tensors) raises no
    error: it issues a :class:`CacheCorruptWarning` naming the file, so the caller rebuilds it.

    Args:
        key: the entry's key (:func:`config_key`).
        kind: the sub-folder (see ``entry_paths``).

    Returns:
        ``(tensors, meta)`` with the tensors on the CPU, or ``None``.
    """
    tpath, mpath = entry_paths(key, kind)
    if not mpath.is_file() or not tpath.is_file():
        return None
    try:
        meta = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        _corrupt(mpath, f"unreadable metadata: {exc}")
        return None
    if not isinstance(meta, dict) or meta.get("sha256") != sha256_file(tpath):
        _corrupt(tpath, "SHA-256 does not match its metadata")
        return None
    try:
        tensors = load_file(str(tpath), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        _corrupt(tpath, f"unreadable tensors: {exc}")
        return None
    return tensors, meta


def remove(key: str, kind: str = "model") -> None:
    """Delete an entry's files (those that exist), so the next use rebuilds it.

    Args:
        key: the entry's key (:func:`config_key`).
        kind: the sub-folder (see ``entry_paths``).
    """
    for p in entry_paths(key, kind):
        p.unlink(missing_ok=True)
