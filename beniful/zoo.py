"""Trained (clean or backdoored) models for an experiment, built once and cached.

``zoo.get("badnets", profile="quick")`` returns a :class:`TrainedModel`: the model, its attack,
the data, the poisoned indices and ACC/ASR. The model is read from the cache when an entry with
the same full configuration exists (seconds), otherwise trained, with an epoch checkpoint so an
interrupted (killed, preempted, requeued) run resumes where it stopped. Training holds the entry's
lock (:mod:`beniful.locks`): processes that ask for the same model at the same time (jobs of the
grid, two notebooks) train it once; the others wait and load it.
"""
from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import cache, datasets, locks, models, profiles, sources, training
from .attacks.base import Attack
# the registry alone, not the ``attacks`` package: importing it runs ``attacks/__init__`` (which
# registers every attack) all the same, and the model key's source digest then follows the model's
# own attack only, so an edit of one attack does not retrain the others' models
from .attacks.registry import ATTACKS
from .case import Case, defender_split
from .datasets import ImageDataset
from .training import evaluate, train_classifier
from .utils import resolve_device, seeded

__all__ = ["TrainedModel", "get", "model_key", "model_config", "defender_split", "data_fingerprint"]


@dataclass
class TrainedModel(Case):
    """A :class:`~beniful.case.Case` made by :func:`get`, with how it was made.

    ``clean`` is the clean copies of the profile's stratified share of the training set, ``poisoned`` the
    poisoned training indices, ``key`` the cache key, and ``labels`` carry the data set, the profile
    and the training device into every result row.

    Attributes:
        metrics: ACC and ASR on the full test set, measured when the model was trained.
        config: everything that determines the weights (:func:`model_config`).
        meta: the cache entry's metadata (training time, device, versions).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def profile(self) -> str:
        """The profile's name."""
        return str(self.labels.get("profile", "custom"))

    @property
    def poison_idx(self) -> Tensor:
        """The poisoned training indices (``poisoned``; empty for the clean model)."""
        return self.poisoned if self.poisoned is not None else torch.zeros(0, dtype=torch.long)


def model_config(dataset: str, attack: Attack | None, profile: profiles.Profile, seed: int,
                 arch: str = "preact_resnet18") -> dict[str, Any]:
    """Everything that determines the trained weights; its hash is the cache key.

    Besides the data set, architecture, attack parameters, training recipe and seed, ``"source"`` is
    :func:`beniful.sources.source_digest` of the code that makes the weights, so a cached model is
    never reused once that code changes:

    - the attack's class (none for the clean model): how samples are poisoned, and a trained trigger
      (IAD's generator) which is stored with the model;
    - :mod:`beniful.training`: the training loop, augmentation and optimiser;
    - :mod:`beniful.models`: the architectures and their initialisation;
    - :mod:`beniful.datasets`: loading of the standard data sets, whose content is not fingerprinted
      (:func:`data_fingerprint` is ``None`` for them);
    - this module: the seeding, the poisoned indices and the resumable loop of :func:`get`.

    Each follows its imports (the attack base class, the utilities). Other attacks, the detectors and
    the eliminators are not included: an edit of them keeps the models.

    Args:
        dataset: data set name.
        attack: the attack, or ``None`` for the clean model.
        profile: the profile giving width and training recipe.
        seed: training seed.
        arch: architecture name from ``models.available()``.

    Returns:
        A JSON-able dict; ``cache.config_key`` of it is the model's key.
    """
    info = datasets.INFO[dataset]
    code = ([type(attack)] if attack is not None else []) + [training, models, datasets, __name__]
    return {
        "dataset": dataset,
        "model": {"arch": arch, "width": profile.width, "num_classes": info["num_classes"],
                  "in_channels": info["shape"][0]},
        "attack": attack.config() if attack is not None else None,
        "train": profile.train_config(dataset).key(),
        "seed": seed,
        "source": sources.source_digest(*code),
    }


def data_fingerprint(train: ImageDataset, test: ImageDataset, dataset: str) -> str | None:
    """``None`` for the data set exactly as :func:`beniful.datasets.load` returns it, else a SHA-256 of the content.

    Without it, ``get(..., data=subset)`` would be cached under the same key as the full data set
    and a later call on the full data would silently load the subset's model.

    Args:
        train: the training split the model is trained on.
        test: the test split it is evaluated on.
        dataset: the data set's registered name (``"mnist5k"``, ...): the splits count as
            unchanged when their ``source`` is ``"<dataset>/train"`` and ``"<dataset>/test"``.

    Returns:
        ``None``, or the first 20 hex digits of the SHA-256 of both splits' images, labels,
        dtypes and shapes.
    """
    if train.source == f"{dataset}/train" and test.source == f"{dataset}/test":
        return None
    h = hashlib.sha256()
    for part in (train, test):
        for t in (part.data, part.targets):
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()[:20]


def _full_config(dataset: str, atk: Attack | None, prof: profiles.Profile, seed: int, arch: str,
                 train: ImageDataset, test: ImageDataset) -> dict[str, Any]:
    cfg = model_config(dataset, atk, prof, seed, arch=arch)
    fingerprint = data_fingerprint(train, test, dataset)
    if fingerprint is not None:
        cfg["data"] = fingerprint
    return cfg


def model_key(attack: str | None = "badnets", dataset: str | None = None, profile: str | profiles.Profile = "quick",
              seed: int = 0, data: tuple[ImageDataset, ImageDataset] | None = None,
              arch: str = "preact_resnet18") -> str:
    """The cache key :func:`get` would use, without loading or training a model.

    The grid (:mod:`beniful.grid`) uses it to tell which models are already in the cache.

    Args:
        attack: as for :func:`get` (a name, or ``"none"``/``None`` for the clean model).
        dataset: as for :func:`get`.
        profile: as for :func:`get`.
        seed: as for :func:`get`.
        data: as for :func:`get`; ``None`` loads the data set (only to fingerprint a profile's subset).
        arch: as for :func:`get`.

    Returns:
        The key; ``cache.entry_paths(key)`` are the model's files once it is trained.
    """
    arch = models.MODELS.canonical(arch)
    prof = profiles.get(profile)
    dataset = datasets.check_name(dataset or prof.default_dataset)
    atk = _build_attack(attack, prof, seed, {})
    train, test = prof.subset_data(dataset, *(data if data is not None else datasets.load(dataset)))
    return cache.config_key(_full_config(dataset, atk, prof, seed, arch, train, test))


def _build_attack(attack: str | Attack | None, prof: profiles.Profile, seed: int, overrides: dict) -> Attack | None:
    if attack is None or isinstance(attack, Attack):
        return attack
    if attack == "none":
        return None
    ATTACKS.get(attack)  # raises the "valid names" error before any work
    kw = prof.attack_kwargs(attack)
    kw.update(overrides)
    return ATTACKS.build(attack, seed=seed, **kw)


def _opt_tensors(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                out[f"opt.{i}.{k}"] = v
    return out


def _opt_state(opt_tensors: dict[str, Tensor], template: torch.optim.Optimizer) -> dict:
    state: dict[int, dict[str, Tensor]] = {}
    for name, v in opt_tensors.items():
        _, i, k = name.split(".", 2)
        state.setdefault(int(i), {})[k] = v
    return {"state": state, "param_groups": template.state_dict()["param_groups"]}


def get(attack: str | Attack | None = "badnets", dataset: str | None = None, profile: str | profiles.Profile = "quick",
        seed: int = 0, device: str = "auto", progress: bool = True, retrain: bool = False,
        data: tuple[ImageDataset, ImageDataset] | None = None, arch: str = "preact_resnet18",
        **attack_overrides: Any) -> TrainedModel:
    """Load from the cache or train the model for (attack, dataset, profile, seed, arch).

    Every name is validated before any data is loaded or any model trained, so a typo fails in
    milliseconds with the list of valid names rather than after a training run.

    Args:
        attack: a name from ``attacks.available()``, ``"none"``/``None`` for the clean model, or an
            :class:`~beniful.attacks.base.Attack` object.
        dataset: a name from ``datasets.available()``; ``None``: the profile's default dataset.
        profile: a name from ``profiles.available()`` or a :class:`~beniful.profiles.Profile`.
        seed: seed of the poisoned indices, the initial weights and the data order.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        progress: show progress bars.
        retrain: ignore the cache (and any checkpoint) and train again.
        data: ``(train, test)`` to use instead of ``datasets.load(dataset)`` (keyed by content). Either
            is cut to the profile's ``data_sizes`` (:meth:`~beniful.profiles.Profile.subset_data`).
        arch: a name from ``models.available()``; part of the cache key.
        **attack_overrides: override the profile's attack parameters (``rate=0.05``).

    Returns:
        The :class:`TrainedModel`, on ``device`` and in eval mode.

    Raises:
        ValueError: an unknown name or an invalid parameter (before any work).
    """
    arch = models.MODELS.canonical(arch)  # the "valid names" error before any work
    prof = profiles.get(profile)
    dataset = datasets.check_name(dataset or prof.default_dataset)
    atk = _build_attack(attack, prof, seed, attack_overrides)
    dev = resolve_device(device)
    train, test = prof.subset_data(dataset, *(data if data is not None else datasets.load(dataset)))
    cfg = _full_config(dataset, atk, prof, seed, arch, train, test)
    key = cache.config_key(cfg)
    tcfg = prof.train_config(dataset)
    c, h, w = train.shape
    if atk is not None:
        atk.setup((c, h, w), "cpu")
    poison_idx = atk.poison_indices(train.targets) if atk is not None else torch.zeros(0, dtype=torch.long)

    # the global generators are seeded for model initialisation and restored afterwards
    with seeded(seed, dev):
        model = models.build(arch, num_classes=cfg["model"]["num_classes"],
                             in_channels=c, width=prof.width)
        ckpt_key = key + ".ckpt"

        def hit() -> TrainedModel | None:
            entry = None if retrain else cache.load(key)
            if entry is None:
                return None
            cache.remove(ckpt_key, kind="checkpoint")  # left over if a run died between final save and cleanup
            tensors, meta = entry
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            if atk is not None:
                atk.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("attack.")})
            model.to(dev).eval()
            if atk is not None:
                atk.to(dev)
            return _trained(model, atk, train, test, poison_idx, prof, seed, key, cfg, meta)

        # ---------------------------------------------------------------- train (resumable)
        def _train() -> TrainedModel:
            start_epoch, opt_state = 0, None
            ck = None if retrain else cache.load(ckpt_key, kind="checkpoint")
            if ck is not None:
                tensors, meta = ck
                model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
                if atk is not None:
                    atk.setup((c, h, w), dev)
                    atk.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("attack.")})
                start_epoch = int(meta["epoch"]) + 1
                opt_tensors = {k: v for k, v in tensors.items() if k.startswith("opt.")}
                model.to(dev)
                template = torch.optim.SGD(model.parameters(), lr=tcfg.lr, momentum=tcfg.momentum,
                                           weight_decay=tcfg.weight_decay)
                opt_state = _opt_state({k: v.to(dev) for k, v in opt_tensors.items()}, template)
                if progress:
                    print(f"resuming {atk.name if atk else 'clean'} model from epoch {start_epoch}/{tcfg.epochs}")

            def checkpoint(epoch: int, m: nn.Module, opt: torch.optim.Optimizer) -> None:
                if epoch + 1 >= tcfg.epochs:
                    return
                t = {f"model.{k}": v for k, v in m.state_dict().items()}
                t.update(_opt_tensors(opt))
                if atk is not None:
                    t.update({f"attack.{k}": v for k, v in atk.state_dict().items()})
                cache.save(ckpt_key, t, {"epoch": epoch, "config": cfg}, kind="checkpoint")

            t0 = time.time()
            train_classifier(model, train.data, train.targets, tcfg, attack=atk, poison_idx=poison_idx, seed=seed,
                             device=dev, progress=progress, start_epoch=start_epoch, optimizer_state=opt_state,
                             on_epoch_end=checkpoint)
            train_time = time.time() - t0
            xte, yte = test.tensors()
            metrics = evaluate(model, xte, yte, atk)
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            if atk is not None:
                tensors.update({f"attack.{k}": v for k, v in atk.state_dict().items()})
            meta = {"config": cfg, "metrics": metrics, "train_seconds": train_time, "device": str(dev),
                    "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
                    "torch": torch.__version__, "poisoned": int(len(poison_idx)), "resumed_from_epoch": start_epoch}
            cache.save(key, tensors, meta)
            cache.remove(ckpt_key, kind="checkpoint")
            return _trained(model.eval(), atk, train, test, poison_idx, prof, seed, key, cfg, meta)

        what = f"model {atk.name if atk else 'clean'}/{dataset}/{prof.name}/seed {seed}"
        if retrain:
            with locks.entry_lock(key, "model", what=what):
                return _train()
        # one process trains, the others wait on the entry's lock and load what it wrote
        return locks.compute_once(key, "model", hit, _train, what=what)


def _trained(model: nn.Module, atk: Attack | None, train: ImageDataset, test: ImageDataset, poison_idx: Tensor,
             prof: profiles.Profile, seed: int, key: str, cfg: dict[str, Any], meta: dict[str, Any]) -> TrainedModel:
    """The :class:`TrainedModel` of a loaded or freshly trained model."""
    clean = defender_split(train, prof.clean_fraction, seed)
    labels = {"dataset": cfg["dataset"], "profile": prof.name, "device": meta.get("device", "?")}
    return TrainedModel(model=model, attack=atk, test=test, clean=clean, train=train, poisoned=poison_idx, seed=seed,
                        labels=labels, key=key, metrics=meta["metrics"], config=cfg, meta=meta)
