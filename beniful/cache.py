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
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_key(config: dict[str, Any]) -> str:
    """Stable 20-hex-digit key of a JSON-able configuration (order-independent)."""
    return hashlib.sha256(canonical_json({"v": FORMAT_VERSION, **config}).encode()).hexdigest()[:20]


def sha256_file(path: Path) -> str:
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
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(clean, tmp))


def entry_paths(key: str, kind: str = "model") -> tuple[Path, Path]:
    d = cache_dir() / kind
    return d / f"{key}.safetensors", d / f"{key}.json"


def save(key: str, tensors: dict[str, Tensor], meta: dict[str, Any], kind: str = "model") -> Path:
    """Write an entry atomically; returns the tensor file's path."""
    tpath, mpath = entry_paths(key, kind)
    atomic_save_tensors(tpath, tensors)
    meta = {**meta, "key": key, "format": FORMAT_VERSION, "sha256": sha256_file(tpath)}
    atomic_write_text(mpath, json.dumps(meta, indent=1, sort_keys=True, default=str))
    return tpath


def _corrupt(path: Path, why: str) -> None:
    warnings.warn(f"cache entry {path} is corrupt ({why}); it will be rebuilt", CacheCorruptWarning, stacklevel=3)


def load(key: str, kind: str = "model") -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """Return ``(tensors, meta)`` for a verified entry, or ``None`` when missing or corrupt."""
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
    for p in entry_paths(key, kind):
        p.unlink(missing_ok=True)
