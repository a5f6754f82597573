"""beniful.zoo: cached models, resumable training, validation before any work.

A tiny custom profile (PreAct-ResNet-18 at width 4, 2 epochs) on a 300-image stratified subset
of mnist5k, with ``BENIFUL_CACHE`` in a temporary folder, so every training run takes seconds
and nothing touches the shared cache.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from beniful import attacks, cache, datasets, profiles, sources, zoo
from beniful.training import TrainConfig

EPOCHS = 2
TINY = profiles.Profile(
    name="tiny-test", description="unit tests: width 4, 2 epochs", width=4,
    train=TrainConfig(epochs=EPOCHS, batch_size=64, lr=0.05, crop_padding=2, hflip=False),
    clean_fraction=0.1,
)
ATTACK = "badnets"


def make_data() -> tuple[datasets.ImageDataset, datasets.ImageDataset]:
    """300 train / 100 test mnist5k images, stratified, fixed: the same in this process and a child."""
    train, test = datasets.load("mnist5k")
    a, _ = datasets.stratified_split(train.targets, 300 / 4000, seed=0)
    b, _ = datasets.stratified_split(test.targets, 0.1, seed=0)
    return train.subset(a), test.subset(b)


def state(tm: zoo.TrainedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in tm.model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"weights differ in {diff[:5]}"


def get(**kw) -> zoo.TrainedModel:
    kw.setdefault("data", DATA())
    return zoo.get(ATTACK, profile=TINY, seed=0, device="cpu", progress=False, **kw)


_DATA: list = []


def DATA():  # noqa: N802 - loaded once per process, lazily (the child process imports this module too)
    if not _DATA:
        _DATA.append(make_data())
    return _DATA[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its cache folder and its weights."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("ref_cache")
    old = os.environ.get("BENIFUL_CACHE")
    os.environ["BENIFUL_CACHE"] = str(d)
    try:
        tm = get()
    finally:
        if old is None:
            os.environ.pop("BENIFUL_CACHE")
        else:
            os.environ["BENIFUL_CACHE"] = old
    assert tm.meta["resumed_from_epoch"] == 0
    return d, state(tm), tm


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("BENIFUL_CACHE", str(d))
    torch.set_num_threads(1)
    return d


@pytest.fixture
def no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("train_classifier was called")

    monkeypatch.setattr(zoo, "train_classifier", fail)


def _copy_cache(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


# ------------------------------------------------------------------------------------------ cache hits


def test_second_call_loads_from_cache_without_training(reference, cache_dir, no_training):
    ref_dir, ref_state, ref_tm = reference
    _copy_cache(ref_dir, cache_dir)
    tm = get()
    assert_same_weights(state(tm), ref_state)
    assert tm.key == ref_tm.key and tm.metrics == ref_tm.metrics
    assert torch.equal(tm.poison_idx, ref_tm.poison_idx)
    assert not tm.model.training
    assert len(tm.clean_data()) == 30  # custom profiles keep working: 10% of 300


def test_stale_checkpoint_is_cleared_on_a_cache_hit(reference, cache_dir, no_training):
    """A run killed after its final save but before deleting its checkpoint leaves no litter for ever."""
    ref_dir, _, ref_tm = reference
    _copy_cache(ref_dir, cache_dir)
    cache.save(ref_tm.key + ".ckpt", {"model.x": torch.zeros(1)}, {"epoch": 0}, kind="checkpoint")
    get()
    assert cache.load(ref_tm.key + ".ckpt", kind="checkpoint") is None
    assert not list((cache_dir / "checkpoint").iterdir())


def test_no_checkpoint_is_left_after_a_finished_run(reference):
    ref_dir, _, _ = reference
    assert list((ref_dir / "model").glob("*.safetensors"))
    assert not (ref_dir / "checkpoint").exists() or not list((ref_dir / "checkpoint").iterdir())


def test_truncated_cache_entry_is_reported_and_rebuilt(reference, cache_dir):
    ref_dir, ref_state, ref_tm = reference
    _copy_cache(ref_dir, cache_dir)
    tpath, _ = cache.entry_paths(ref_tm.key)
    raw = tpath.read_bytes()
    tpath.write_bytes(raw[: len(raw) // 3])
    with pytest.warns(cache.CacheCorruptWarning, match=str(tpath)):
        tm = get()
    assert tm.meta["resumed_from_epoch"] == 0  # retrained from scratch ...
    assert_same_weights(state(tm), ref_state)  # ... to the same weights (same seed, CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(ref_tm.key) is not None  # the rebuilt entry verifies


def test_subset_data_gets_its_own_cache_key(reference):
    _, _, ref_tm = reference
    train, test = DATA()
    assert zoo.data_fingerprint(train, test, "mnist5k") is not None
    assert "data" in ref_tm.config
    other = zoo.data_fingerprint(train.subset(torch.arange(299)), test, "mnist5k")
    assert other != zoo.data_fingerprint(train, test, "mnist5k")
    full_train, full_test = datasets.load("mnist5k")
    assert zoo.data_fingerprint(full_train, full_test, "mnist5k") is None  # shared quick-profile keys unchanged



def test_the_model_key_follows_the_code_that_makes_the_weights(monkeypatch, edited_package):
    """An edit of an attack's source changes that attack's model key only; an edit of the training
    loop, the architectures or the attack base class changes every key; the same source in another
    folder changes none."""
    atks = {name: attacks.build(name) for name in ("badnets", "iad")}
    atks["none"] = None

    def keys() -> dict[str, str]:
        return {n: cache.config_key(zoo.model_config("mnist5k", a, TINY, 0)) for n, a in atks.items()}

    real = keys()
    monkeypatch.setattr(sources, "PACKAGE_ROOT", edited_package({}, "same"))
    assert keys() == real
    monkeypatch.setattr(sources, "PACKAGE_ROOT", edited_package({"attacks/iad.py": "\n# edit\n"}, "iad"))
    k = keys()
    assert k["iad"] != real["iad"] and k["badnets"] == real["badnets"] and k["none"] == real["none"]
    for edited in ("training.py", "models.py", "attacks/base.py"):
        monkeypatch.setattr(sources, "PACKAGE_ROOT", edited_package({edited: "\n# edit\n"}, edited.replace("/", "_")))
        k = keys()
        assert all(k[n] != real[n] for n in real), edited  # training imports the attack base class


# ------------------------------------------------------------------------------------------ resume


def _run_interrupted_after(epoch_to_stop: int, monkeypatch) -> list[int]:
    """Train, raising KeyboardInterrupt (Ctrl-C) right after epoch ``epoch_to_stop``'s checkpoint."""
    real = zoo.train_classifier
    seen: list[int] = []

    def interrupted(*args, on_epoch_end=None, **kw):
        def wrapped(epoch, model, opt):
            on_epoch_end(epoch, model, opt)
            seen.append(epoch)
            if epoch == epoch_to_stop:
                raise KeyboardInterrupt

        return real(*args, on_epoch_end=wrapped, **kw)

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(zoo, "train_classifier", interrupted)
        get()
    return seen


def test_interrupted_run_resumes_to_identical_weights(reference, cache_dir, monkeypatch):
    _, ref_state, ref_tm = reference
    assert _run_interrupted_after(0, monkeypatch) == [0]
    ckpt, _ = cache.entry_paths(ref_tm.key + ".ckpt", kind="checkpoint")
    assert ckpt.is_file()
    assert cache.load(ref_tm.key) is None  # no final entry yet

    real = zoo.train_classifier
    starts = []

    def spy(*args, **kw):
        starts.append(kw["start_epoch"])
        return real(*args, **kw)

    monkeypatch.setattr(zoo, "train_classifier", spy)
    tm = get()
    assert starts == [1] and tm.meta["resumed_from_epoch"] == 1
    assert_same_weights(state(tm), ref_state)
    assert tm.metrics == ref_tm.metrics
    assert not ckpt.exists()  # removed once the final entry is written


def test_corrupt_checkpoint_restarts_from_scratch(reference, cache_dir, monkeypatch):
    _, ref_state, ref_tm = reference
    _run_interrupted_after(0, monkeypatch)
    ckpt, _ = cache.entry_paths(ref_tm.key + ".ckpt", kind="checkpoint")
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.warns(cache.CacheCorruptWarning, match="ckpt"):
        tm = get()
    assert tm.meta["resumed_from_epoch"] == 0
    assert_same_weights(state(tm), ref_state)


_CHILD = r"""
import importlib.util, os, sys, time, torch
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("test_zoo_child", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from beniful import training, zoo
state = {"epoch_done": -1, "batches": 0}
real_train, real_augment = zoo.train_classifier, training.augment

def train(*a, on_epoch_end=None, **kw):
    def cb(epoch, model, opt):
        on_epoch_end(epoch, model, opt)
        state["epoch_done"] = epoch
    return real_train(*a, on_epoch_end=cb, **kw)

def augment(*a, **kw):
    if state["epoch_done"] == 0:  # inside epoch 1, after epoch 0's checkpoint
        state["batches"] += 1
        if state["batches"] == 2:
            print("MID-EPOCH", flush=True)
            time.sleep(600)
    return real_augment(*a, **kw)

zoo.train_classifier, training.augment = train, augment
mod.get()
print("FINISHED", flush=True)
"""


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else "<no output within the timeout>"


def test_sigkill_mid_epoch_then_restart_gives_identical_weights(reference, cache_dir):
    """A real process killed with SIGKILL in the middle of epoch 1 (kill -9, power loss)."""
    _, ref_state, ref_tm = reference
    env = {**os.environ, "BENIFUL_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, __file__], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = _readline(proc, timeout=300)  # the child is mid-epoch once it prints this
        assert line.strip() == "MID-EPOCH", (line, proc.stderr.read() if proc.poll() is not None else "")
        ckpt, meta = cache.entry_paths(ref_tm.key + ".ckpt", kind="checkpoint")
        assert ckpt.is_file() and meta.is_file()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert cache.load(ref_tm.key) is None
    tm = get()
    assert tm.meta["resumed_from_epoch"] == 1
    assert_same_weights(state(tm), ref_state)
    assert tm.metrics == ref_tm.metrics


# ------------------------------------------------------------------------------------------ validation


def test_unknown_attack_fails_before_any_work(cache_dir, monkeypatch, no_training):
    def no_load(*a, **k):
        raise AssertionError("data was loaded")

    monkeypatch.setattr(datasets, "load", no_load)
    with pytest.raises(ValueError) as err:
        zoo.get("badnetz", profile="quick", progress=False)
    msg = str(err.value)
    assert "'badnetz'" in msg
    for name in attacks.available():
        assert name in msg
    assert {"badnets", "blended", "sig", "wanet"} <= set(attacks.available())
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.safetensors"))


@pytest.mark.parametrize("kwargs,match", [
    ({"profile": "fast"}, "valid profiles: paper, quick"),
    ({"dataset": "cifar100"}, "valid names: cifar10, fashion-mnist, mnist5k, tiny-imagenet"),
    ({"rate": 1.5}, "rate must be in"),
    ({"rate": 0.0}, "rate must be in"),
    ({"device": "tpu"}, "invalid device"),
])
def test_bad_parameters_fail_before_any_work(cache_dir, monkeypatch, no_training, kwargs, match):
    def no_load(*a, **k):
        raise AssertionError("data was loaded")

    monkeypatch.setattr(datasets, "load", no_load)
    with pytest.raises(ValueError, match=match):
        zoo.get("badnets", progress=False, **kwargs)


def test_missing_dataset_names_the_download_command(cache_dir, monkeypatch, tmp_path, no_training):
    monkeypatch.setenv("BENIFUL_DATA", str(tmp_path / "nodata"))
    with pytest.raises(datasets.DatasetNotFoundError, match="python data_scripts/download_cifar10.py"):
        zoo.get("badnets", dataset="cifar10", profile="paper", progress=False)


# ------------------------------------------------------------------------------------------ registered data / profiles / arch


@pytest.fixture
def tiny_registered():
    """A 1x12x12 in-memory dataset and a 1-epoch width-2 profile whose default dataset it is,
    both registered for one test (what a user, or a later ``fashion-mnist`` / ``smoke``, does)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (80, 1, 12, 12), generator=g, dtype=torch.uint8)
    y = torch.arange(80) % 4
    calls: list = []

    def loader(root):
        calls.append(root)
        return datasets.ImageDataset(x[:60], y[:60]), datasets.ImageDataset(x[60:], y[60:])

    datasets.register(datasets.DatasetSpec("tiny-squares", 4, (1, 12, 12), loader, embedded=True))
    profiles.register(profiles.Profile(
        name="tiny_smoke", description="unit tests: width 2, 1 epoch", width=2,
        train=TrainConfig(epochs=1, batch_size=32, lr=0.05, crop_padding=1, hflip=False),
        clean_fraction=0.2, default_dataset="tiny-squares"))
    try:
        yield calls
    finally:
        datasets.DATASETS.unregister("tiny-squares")
        profiles.PROFILES.unregister("tiny_smoke")


def test_registered_dataset_and_profile_work_in_zoo_get(cache_dir, tiny_registered):
    tm = zoo.get("badnets", profile="tiny-smoke", device="cpu", progress=False)  # the dataset: the profile's default
    assert tiny_registered == [None]
    assert tm.dataset == "tiny-squares" and tm.profile == "tiny_smoke"
    assert tm.config["dataset"] == "tiny-squares" and tm.config["model"]["num_classes"] == 4
    assert "data" not in tm.config  # what datasets.load returns is keyed by name
    assert tm.model.linear.out_features == 4 and tm.meta["resumed_from_epoch"] == 0
    assert len(tm.clean_data()) == 12  # the profile's clean_fraction of 60
    again = zoo.get("badnets", dataset="Tiny_Squares", profile="tiny_smoke", device="cpu", progress=False)
    assert again.key == tm.key and "resumed_from_epoch" in again.meta  # served from the cache
    assert_same_weights(state(again), state(tm))


def test_arch_goes_into_the_model_config_in_its_registered_spelling(cache_dir, tiny_registered, no_training,
                                                                    monkeypatch):
    class Stop(Exception):
        pass

    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs.get("arch"))
        raise Stop

    monkeypatch.setattr(zoo, "model_config", record)
    for arch in ("preact_resnet18", "PreAct-ResNet18"):
        with pytest.raises(Stop):
            zoo.get("badnets", profile="tiny_smoke", device="cpu", progress=False, arch=arch)
    assert seen == ["preact_resnet18", "preact_resnet18"]  # one cache key for both spellings


def test_unknown_arch_fails_before_any_work(cache_dir, monkeypatch, no_training):
    def no_load(*a, **k):
        raise AssertionError("data was loaded")

    monkeypatch.setattr(datasets, "load", no_load)
    with pytest.raises(ValueError, match="unknown model 'resnet50'; valid names: preact_resnet18"):
        zoo.get("badnets", profile="quick", progress=False, arch="resnet50")
    with pytest.raises(TypeError, match="model name must be a string"):
        zoo.get("badnets", profile="quick", progress=False, arch=None)  # type: ignore[arg-type]
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.safetensors"))


def test_model_key_is_the_key_get_uses(reference):
    """The grid tells cached models by ``model_key``: it must be ``get``'s key, without training."""
    _, _, ref_tm = reference
    assert zoo.model_key(ATTACK, "mnist5k", TINY, 0, data=DATA()) == ref_tm.key
    assert zoo.model_key(ATTACK, "mnist5k", TINY, 1, data=DATA()) != ref_tm.key
    assert zoo.model_key("none", "mnist5k", TINY, 0, data=DATA()) != ref_tm.key
