"""beniful.locks: a cache entry is computed once however many processes ask for it at the same time.

The acceptance test starts two real processes on an empty cache that ask for the same tiny model
(test_zoo's width-4, 2-epoch profile on 300 images) at the same moment: one trains it, the other
waits on the entry's lock and loads the same weights.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from beniful import cache, locks

TEST_ZOO = Path(__file__).with_name("test_zoo.py")

_CHILD = r"""
import importlib.util, os, sys, time, torch
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("test_zoo_child", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from beniful import zoo
out, me, other = sys.argv[2], sys.argv[3], sys.argv[4]
mod.DATA()  # data loaded before the start line, so both ask at the same moment
real = zoo.train_classifier

def train(*a, **kw):
    with open(os.path.join(out, "trained"), "a") as f:
        f.write(me + "\n")
    time.sleep(1.0)  # the other process asks while this one trains
    return real(*a, **kw)

zoo.train_classifier = train
open(os.path.join(out, "ready-" + me), "w").close()
deadline = time.time() + 120
while not os.path.exists(os.path.join(out, "ready-" + other)) and time.time() < deadline:
    time.sleep(0.01)
tm = mod.get()
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in tm.model.state_dict().items()}, os.path.join(out, me + ".safetensors"))
print("KEY", tm.key, flush=True)
"""


def test_two_processes_on_an_empty_cache_train_the_model_once(tmp_path):
    cache_dir, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "BENIFUL_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(TEST_ZOO), str(out), me, other], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other in (("a", "b"), ("b", "a"))]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (so, se) in zip(procs, results):
        assert p.returncode == 0, se
    trained = (out / "trained").read_text().split()
    assert len(trained) == 1, f"trained {len(trained)} times: {trained}"
    waiter = "b" if trained == ["a"] else "a"
    stderr = dict(zip("ab", (se for _, se in results)))
    assert "waiting for model badnets/mnist5k/tiny-test/seed 0" in stderr[waiter]
    keys = {so.split()[-1] for so, _ in results}
    assert len(keys) == 1
    a, b = load_file(str(out / "a.safetensors")), load_file(str(out / "b.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    key = keys.pop()
    assert (cache_dir / "model" / f"{key}.safetensors").is_file()
    assert not (cache_dir / "model" / f"{key}.lock.holder").exists()  # released cleanly
    assert sorted(p.name for p in (cache_dir / "model").iterdir() if p.suffix == ".tmp") == []


_HOLDER = r"""
import os, sys, time
from beniful import locks
with locks.entry_lock(sys.argv[1], "model"):
    print("HELD", flush=True)
    time.sleep(60)
"""


def test_a_lock_timeout_names_the_lock_and_its_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    env = {**os.environ, "SLURM_JOB_ID": "4242"}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, "k1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "HELD"
        info = locks.holder("k1")
        assert info is not None and info["pid"] == proc.pid and info["job"] == "4242"
        t0 = time.monotonic()
        with pytest.raises(locks.LockTimeout) as err:
            with locks.entry_lock("k1", "model", timeout=0.5, what="model X"):
                pass
        assert time.monotonic() - t0 < 30
        msg = str(err.value)
        for part in ("model X", str(locks.lock_path("k1")), f"pid {proc.pid}", "SLURM job 4242", "BENIFUL_LOCK_TIMEOUT"):
            assert part in msg, (part, msg)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    # the kernel dropped the dead holder's lock: no stale lock
    with locks.entry_lock("k1", "model", timeout=5):
        pass


def test_compute_once_builds_on_a_miss_and_loads_on_a_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    calls = []

    def load():
        entry = cache.load("k2", kind="detector")
        return None if entry is None else entry[1]["n"]

    def build():
        calls.append(1)
        cache.save("k2", {"x": torch.zeros(2)}, {"n": 7}, kind="detector")
        return 7

    assert locks.compute_once("k2", "detector", load, build) == 7
    assert locks.compute_once("k2", "detector", load, build) == 7
    assert calls == [1]
    assert locks.lock_path("k2", "detector").parent == tmp_path / "detector"


def test_the_second_lookup_under_the_lock_sees_an_entry_written_meanwhile(tmp_path, monkeypatch):
    """The waiter's first look (before the lock) missed; the holder wrote the entry; the waiter must load it."""
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    looks = []

    def load():
        looks.append(1)
        return None if len(looks) == 1 else "written by the other process"

    def build():
        raise AssertionError("built although the entry exists")

    assert locks.compute_once("k3", "model", load, build) == "written by the other process"


def test_holder_file_is_removed_when_the_block_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError):
        with locks.entry_lock("k4", "model"):
            assert json.loads(locks.lock_path("k4").with_suffix(".lock.holder").read_text())["pid"] == os.getpid()
            raise RuntimeError("boom")
    assert locks.holder("k4") is None


@pytest.mark.parametrize("raw", ["0", "-3", "soon"])
def test_a_bad_lock_timeout_is_named(monkeypatch, raw):
    monkeypatch.setenv("BENIFUL_LOCK_TIMEOUT", raw)
    with pytest.raises(ValueError, match=f"BENIFUL_LOCK_TIMEOUT.*{raw!r}"):
        locks.lock_timeout()


def test_lock_timeout_default_and_override(monkeypatch):
    monkeypatch.delenv("BENIFUL_LOCK_TIMEOUT", raising=False)
    assert locks.lock_timeout() == locks.DEFAULT_TIMEOUT
    monkeypatch.setenv("BENIFUL_LOCK_TIMEOUT", "2.5")
    assert locks.lock_timeout() == 2.5
