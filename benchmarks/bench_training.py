"""Training throughput: ``train_classifier`` (fast path) vs a plain torchvision DataLoader loop.

Both train the same PreAct-ResNet-18 from the same initial weights on the same images with the
same optimiser, batch size and augmentation (random crop with zero padding, horizontal flip when
the profile uses it). They differ only in the machinery:

- fast: ``beniful.training.train_classifier``: uint8 data resident on the device, batched crop/flip
  on the device, bf16 autocast + channels_last on CUDA, optional ``torch.compile``;
- plain: a ``Dataset`` applying ``torchvision.transforms.v2`` (RandomCrop, RandomHorizontalFlip,
  ToDtype) one sample at a time, a shuffling ``DataLoader`` (``--workers`` processes), fp32.

Images/s is measured per epoch; the first epoch of each run (allocator warm-up, compilation) is
left out when a run has more than one epoch. ``data_images_per_second`` times each path's data work
alone (batches produced on the device, no model) for one epoch: on a CPU the model's compute hides
the pipeline, so this column shows what the machinery itself costs.

    python benchmarks/bench_training.py [--profile quick] [--device cpu] [--repeats 3] [--quick]
    python benchmarks/bench_training.py --synthetic cifar10 --device cuda [--compile]   # paper-profile GPU epoch
"""
from __future__ import annotations

import copy
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from beniful import datasets, models
from beniful.training import TrainConfig, augment, make_optimizer, train_classifier
from beniful.utils import batches

from benchmarks._common import base_parser, median, print_table, rotate, save, setup, sync

#: training-set sizes of the data sets, for synthetic stand-ins and 100-epoch projections
TRAIN_SIZES = {"mnist5k": 4000, "cifar10": 50000, "tiny-imagenet": 100000}
#: issue 6's GPU acceptance: 100 epochs at CIFAR-10 size within this many minutes
GPU_MINUTES_FOR_100_EPOCHS = 4.0


def parser():
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--synthetic", default=None, metavar="DATASET",
                   help="time on random uint8 tensors of DATASET's shape and training-set size "
                        f"({', '.join(f'{k}: {v}' for k, v in TRAIN_SIZES.items())}) instead of the real data; "
                        "the profile then defaults to 'paper'")
    p.add_argument("--width", type=int, default=None,
                   help="model width (default: the profile's; 64 = standard PreAct-ResNet-18 with --synthetic)")
    p.add_argument("--n", type=int, default=None, help="use only the first N training images (--quick: 512)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per timed run (default 2; --quick: 1)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes of the plain loop (0 or 2)")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path (CUDA only)")
    p.add_argument("--paths", default="fast,plain", help="which paths to time: fast, plain or both")
    return p


class TransformDataset(Dataset):
    """torchvision-style dataset over uint8 images: the transform runs per sample, in the loader."""

    def __init__(self, data: Tensor, targets: Tensor, transform: v2.Transform) -> None:
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.data[i]), int(self.targets[i])


def plain_transform(cfg: TrainConfig, size: tuple[int, int]) -> v2.Transform:
    steps: list[v2.Transform] = []
    if cfg.crop_padding > 0:
        steps.append(v2.RandomCrop(size, padding=cfg.crop_padding, fill=0))
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def train_plain(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, device: torch.device,
                workers: int, seed: int) -> list[float]:
    """The plain loop; returns the wall seconds of each epoch."""
    ds = TransformDataset(x, y, plain_transform(cfg, tuple(x.shape[2:])))
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, generator=g,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    model.to(device).train()
    opt, sched = make_optimizer(model, cfg, len(loader))
    times = []
    for _ in range(cfg.epochs):
        sync(device)
        t0 = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def train_fast(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, device: torch.device,
               seed: int) -> list[float]:
    """``train_classifier``; returns the wall seconds of each epoch (timed from its epoch hook)."""
    stamps: list[float] = []

    def hook(epoch: int, m: nn.Module, opt: torch.optim.Optimizer) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    sync(device)
    t0 = time.perf_counter()
    train_classifier(model, x, y, cfg, seed=seed, device=device, progress=False, on_epoch_end=hook)
    edges = [t0] + stamps
    return [b - a for a, b in zip(edges, edges[1:])]


def data_epoch_plain(x: Tensor, y: Tensor, cfg: TrainConfig, device: torch.device, workers: int, seed: int) -> float:
    """Seconds to produce one epoch of augmented batches on ``device`` with the plain loader (no model)."""
    ds = TransformDataset(x, y, plain_transform(cfg, tuple(x.shape[2:])))
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=device.type == "cuda")
    sync(device)
    t0 = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
    sync(device)
    return time.perf_counter() - t0


def data_epoch_fast(x: Tensor, y: Tensor, cfg: TrainConfig, device: torch.device, seed: int) -> float:
    """Seconds for the fast path's per-batch data work over one epoch (the same steps as
    ``train_classifier``: index the resident uint8 tensor, scale, crop/flip on the device)."""
    xs, ys = x.to(device), y.to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    sync(device)
    t0 = time.perf_counter()
    perm = torch.randperm(len(ys), generator=g, device=device)
    for s in batches(len(ys), cfg.batch_size):
        idx = perm[s]
        xb = augment(xs[idx].float() / 255, cfg.crop_padding, cfg.hflip, g)
        ys[idx]  # the label gather of a real step, timed too
        if device.type == "cuda" and cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
    sync(device)
    return time.perf_counter() - t0


def load_data(name: str, synthetic: bool, n: int | None, seed: int) -> tuple[Tensor, Tensor, int]:
    """(uint8 images, labels, number of classes): the real training set or random stand-ins."""
    info = datasets.INFO[name]
    if synthetic:
        size = n or TRAIN_SIZES[name]
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, (size, *info["shape"]), generator=g, dtype=torch.uint8)
        y = torch.randint(0, info["num_classes"], (size,), generator=g)
        return x, y, info["num_classes"]
    train, _ = datasets.load(name)
    x, y = train.data, train.targets
    if n:
        x, y = x[:n], y[:n]
    return x, y, info["num_classes"]


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parser().parse_args(argv)
    if args.synthetic:
        args.dataset = args.synthetic
        if args.profile is None:  # the synthetic epoch stands in for the paper profile's GPU run
            args.profile = "paper"
    st = setup(args)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in ("fast", "plain")]
    if bad or not paths:
        raise ValueError(f"--paths must name 'fast' and/or 'plain', got {args.paths!r}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    synthetic = args.synthetic is not None
    n = args.n or (512 if args.quick else None)
    epochs = args.epochs or (1 if args.quick else 2)
    width = args.width or (64 if synthetic else st.profile.width)
    cfg = st.profile.train_config(st.dataset)
    cfg = replace(cfg, epochs=epochs, batch_size=args.batch_size or cfg.batch_size, compile=args.compile)
    x, y, classes = load_data(st.dataset, synthetic, n, args.seed)
    torch.manual_seed(args.seed)
    init = models.build("preact_resnet18", num_classes=classes, in_channels=x.shape[1], width=width)
    nparams = sum(p.numel() for p in init.parameters())
    print(st.header("training throughput"))
    print(f"  {'synthetic' if synthetic else 'real'} {st.dataset}: {len(y)} images {tuple(x.shape[1:])}; "
          f"PreAct-ResNet-18 width {width} ({nparams / 1e6:.2f}M params); batch {cfg.batch_size}, "
          f"crop pad {cfg.crop_padding}, hflip {cfg.hflip}; {epochs} epoch(s) per run; plain loader workers "
          f"{args.workers}; fast path amp={cfg.amp} channels_last={cfg.channels_last} compile={cfg.compile} "
          "(amp/channels_last/compile act on CUDA only)")

    label = {"fast": "fast", "plain": f"plain_dataloader_w{args.workers}"}
    epoch_secs: dict[str, list[float]] = {p: [] for p in paths}
    data_secs: dict[str, list[float]] = {p: [] for p in paths}
    errors: dict[str, str] = {}
    for r in range(st.repeats):
        for path in rotate(paths, r):
            if path in errors:
                continue
            model = copy.deepcopy(init)
            try:
                if path == "fast":
                    data_secs[path].append(data_epoch_fast(x, y, cfg, st.device, args.seed + r))
                else:
                    data_secs[path].append(data_epoch_plain(x, y, cfg, st.device, args.workers, args.seed + r))
                if path == "fast":
                    t = train_fast(model, x, y, cfg, st.device, args.seed + r)
                else:
                    t = train_plain(model, x, y, cfg, st.device, args.workers, args.seed + r)
            except Exception as exc:
                errors[path] = f"{type(exc).__name__}: {exc}"
                print(f"  ! {path} failed:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            epoch_secs[path].extend(t[1:] if len(t) > 1 else t)
            del model
            if st.device.type == "cuda":
                torch.cuda.empty_cache()

    full = TRAIN_SIZES.get(st.dataset, len(y))
    rows = []
    for path in paths:
        s = median(epoch_secs[path])
        ips = len(y) / s if s == s and s > 0 else float("nan")
        rows.append({**st.columns(), "data_source": "synthetic" if synthetic else "real", "path": label[path],
                     "width": width, "params": nparams, "batch_size": cfg.batch_size, "n_images": len(y),
                     "epochs_per_run": epochs, "timed_epochs": len(epoch_secs[path]), "seconds_per_epoch": s,
                     "images_per_second": ips,
                     "minutes_100_epochs_full_size": 100 * full / ips / 60 if ips == ips else float("nan"),
                     "data_seconds_per_epoch": median(data_secs[path]),
                     "data_images_per_second": len(y) / median(data_secs[path]) if data_secs[path] else float("nan"),
                     "amp": cfg.amp and path == "fast" and st.device.type == "cuda",
                     "channels_last": cfg.channels_last and path == "fast" and st.device.type == "cuda",
                     "compile": cfg.compile and path == "fast" and st.device.type == "cuda",
                     "workers": args.workers if path == "plain" else 0, "error": errors.get(path, "")})
    df = pd.DataFrame(rows)
    plain_ips = df.loc[df["path"] == label["plain"], "images_per_second"]
    base = float(plain_ips.iloc[0]) if len(plain_ips) else float("nan")
    df.insert(df.columns.get_loc("images_per_second") + 1, "ratio_vs_plain", df["images_per_second"] / base)
    print()
    plain_data = df.loc[df["path"] == label["plain"], "data_images_per_second"]
    df["data_ratio_vs_plain"] = df["data_images_per_second"] / (float(plain_data.iloc[0]) if len(plain_data) else
                                                                 float("nan"))
    print_table(df, ["path", "images_per_second", "ratio_vs_plain", "seconds_per_epoch", "timed_epochs",
                     "minutes_100_epochs_full_size", "data_images_per_second", "data_ratio_vs_plain", "error"])
    if "fast" in paths and st.device.type == "cuda" and st.dataset == "cifar10" and width == 64:
        m = float(df.loc[df["path"] == "fast", "minutes_100_epochs_full_size"].iloc[0])
        ok = m <= GPU_MINUTES_FOR_100_EPOCHS
        print(f"acceptance (issue 6, GPU): 100 CIFAR-10 epochs in {m:.2f} min on {st.device_name} "
              f"(need <= {GPU_MINUTES_FOR_100_EPOCHS:g}): {'PASS' if ok else 'FAIL'}")
    save(df, st, "bench_training")
    return df


if __name__ == "__main__":
    main()
