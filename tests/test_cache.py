"""beniful.cache: atomic writes, safetensors-only loading, hash-verified entries, stable keys."""
from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from beniful import cache


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("BENIFUL_CACHE", str(d))
    return d


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"model.w": torch.randn(8, 4, generator=g), "model.n": torch.tensor(3), "attack.mask": torch.ones(2, 2)}


class _Payload:
    """Unpickling this runs ``exec`` which creates ``marker``: a code-executing payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


# ------------------------------------------------------------------------------------------ keys


def test_key_is_order_independent_and_value_sensitive():
    a = {"dataset": "mnist5k", "seed": 0, "model": {"width": 8, "arch": "preact_resnet18"}, "attack": {"rate": 0.1}}
    b = {"attack": {"rate": 0.1}, "model": {"arch": "preact_resnet18", "width": 8}, "seed": 0, "dataset": "mnist5k"}
    assert cache.config_key(a) == cache.config_key(b)
    assert len(cache.config_key(a)) == 20 and int(cache.config_key(a), 16) >= 0
    assert cache.config_key({**a, "seed": 1}) != cache.config_key(a)
    assert cache.config_key({**a, "model": {"width": 16, "arch": "preact_resnet18"}}) != cache.config_key(a)
    assert cache.config_key({**a, "attack": {"rate": 0.1, "target": 0}}) != cache.config_key(a)


def test_key_ignores_dict_order_but_not_list_order():
    """Dict order is incidental; list order is content (e.g. a trigger's pixel coordinates)."""
    assert cache.config_key({"b": [1, 2], "a": None}) == cache.config_key({"a": None, "b": [1, 2]})
    assert cache.config_key({"b": [1, 2], "a": None}) != cache.config_key({"b": [2, 1], "a": None})


def test_cache_dir_follows_env(cache_dir):
    assert cache.cache_dir() == cache_dir and cache_dir.is_dir()


# ------------------------------------------------------------------------------------------ round trip


def test_save_and_load_round_trip(cache_dir):
    t = _tensors()
    path = cache.save("k1", t, {"metrics": {"acc": 0.9}})
    assert path == cache_dir / "model" / "k1.safetensors"
    loaded, meta = cache.load("k1")
    assert set(loaded) == set(t) and all(torch.equal(loaded[k], t[k]) for k in t)
    assert meta["metrics"] == {"acc": 0.9} and meta["key"] == "k1"
    assert meta["sha256"] == cache.sha256_file(path)
    assert cache.load("missing") is None
    # the tensor file is plain safetensors: its header is JSON, there is no pickle in it
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert set(header) - {"__metadata__"} == set(t)


def test_kinds_are_separate(cache_dir):
    cache.save("k", _tensors(), {}, kind="checkpoint")
    assert cache.load("k") is None
    assert cache.load("k", kind="checkpoint") is not None
    cache.remove("k", kind="checkpoint")
    assert not list((cache_dir / "checkpoint").iterdir())


# ------------------------------------------------------------------------------------------ atomicity


def test_atomic_write_keeps_old_content_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    cache.atomic_write_bytes(target, b"old content")

    def crash(self, data):  # write half, then "lose power"
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(Path, "write_bytes", crash)
        cache.atomic_write_bytes(target, b"new content that is longer")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left behind


def test_atomic_write_uses_rename(tmp_path, monkeypatch):
    """The final name only ever appears through os.replace of a complete temp file."""
    target = tmp_path / "f.txt"
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).read_text(), Path(src).parent == Path(dst).parent, Path(dst).exists()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    cache.atomic_write_text(target, "hello")
    assert seen == [("hello", True, False)]
    assert target.read_text() == "hello"


def test_crash_between_tensor_and_metadata_write_is_a_miss(cache_dir, monkeypatch):
    def crash(path, text):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(cache, "atomic_write_text", crash)
        cache.save("k", _tensors(), {})
    assert (cache_dir / "model" / "k.safetensors").is_file() and not (cache_dir / "model" / "k.json").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load("k") is None  # tensors without metadata: not an entry yet
    cache.save("k", _tensors(), {})
    assert cache.load("k") is not None
    assert not [p for p in (cache_dir / "model").iterdir() if p.suffix == ".tmp"]


# ------------------------------------------------------------------------------------------ corruption


def _entry(key="k"):
    cache.save(key, _tensors(), {"metrics": {"acc": 0.5}})
    return cache.entry_paths(key)


def test_truncated_entry_is_reported_with_its_path(cache_dir):
    tpath, _ = _entry()
    raw = tpath.read_bytes()
    tpath.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(cache.CacheCorruptWarning, match=str(tpath)):
        assert cache.load("k") is None


def test_tampered_tensor_bytes_are_detected_by_hash(cache_dir):
    tpath, _ = _entry()
    raw = bytearray(tpath.read_bytes())
    raw[-1] ^= 0xFF  # still a well-formed safetensors file, different weights
    tpath.write_bytes(bytes(raw))
    with pytest.warns(cache.CacheCorruptWarning, match="SHA-256"):
        assert cache.load("k") is None


def test_unreadable_metadata_is_reported(cache_dir):
    _, mpath = _entry()
    mpath.write_text("{not json")
    with pytest.warns(cache.CacheCorruptWarning, match=str(mpath)):
        assert cache.load("k") is None


def test_corrupt_entry_is_rebuilt_by_saving_again(cache_dir):
    tpath, _ = _entry()
    tpath.write_bytes(b"garbage")
    with pytest.warns(cache.CacheCorruptWarning):
        assert cache.load("k") is None
    cache.save("k", _tensors(), {"metrics": {"acc": 0.5}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensors, _ = cache.load("k")
    assert torch.equal(tensors["model.w"], _tensors()["model.w"])


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
@pytest.mark.parametrize("hash_matches", [True, False])
def test_pickle_payload_in_the_cache_is_refused_and_never_runs(cache_dir, tmp_path, how, hash_matches):
    """An attacker replaces an entry with a pickle (and even fixes up the hash): nothing executes."""
    marker = tmp_path / "payload_ran"
    evil = {"model.w": _Payload(marker)}
    # the payload is real: unpickling it the unsafe way runs it
    pickle.loads(pickle.dumps(evil))
    assert marker.exists()
    marker.unlink()

    tpath, mpath = _entry()
    if how == "pickle":
        tpath.write_bytes(pickle.dumps(evil))
    else:
        torch.save(evil, tpath)
    if hash_matches:
        meta = json.loads(mpath.read_text())
        meta["sha256"] = cache.sha256_file(tpath)
        mpath.write_text(json.dumps(meta))
    with pytest.warns(cache.CacheCorruptWarning, match=str(tpath)):
        assert cache.load("k") is None
    assert not marker.exists()


def test_cache_module_never_unpickles():
    src = Path(cache.__file__).read_text()
    assert "import pickle" not in src and "torch.load" not in src
