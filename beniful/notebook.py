"""Shared glue for the papermill notebooks in ``notebooks/`` (one per table and figure of METHOD.md section 4).

Why a module: every notebook takes the same parameters (``profile``, ``dataset``, ``attacks``,
``seed``, ``device``) and must reject bad values *before* any model is trained, label its output
with how it was made, draw in one colour-blind-safe style and write its tidy CSV to the same place.
Keeping that here keeps the notebooks thin and their behaviour identical.

    run = notebook.setup(profile="quick", dataset=None, attacks=None, seed=0, device="auto")
    print(run.provenance)            # profile=quick / dataset=mnist5k / device=cpu / seeds=0
    tm = zoo.get("badnets", **run.zoo_kwargs(seed=run.seeds[0]))
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import attacks as attacks_mod
from . import datasets, detectors as detectors_mod, eliminators as eliminators_mod, paths, profiles, results
from .datasets import ImageDataset
from .utils import batches, check_layer, resolve_device

__all__ = [
    "PLANNED", "QUICK_BUDGET", "NOTEBOOK_DEFAULTS", "Run", "setup", "choose", "pending", "method_params", "kwargs_note", "detection_test_images", "test_subset",
    "QUICK_DETECTION_TEST_IMAGES", "repo_root", "results_root", "data_root", "display_path", "style", "palette",
    "write_table", "table_name", "seed_table", "qualitative_detection", "qualitative_elimination", "show_table", "glue", "pending_note", "layer_features", "pca_2d", "plot_trigger_grid",
    "plot_feature_pca", "plot_metric_bars", "sanitize", "separation", "collect_results", "describe_provenance",
    "claims_table", "parameter_table", "default_of",
]

#: What METHOD.md section 3 plans for every table, in table order. Notebooks show the names that are
#: registered and list the rest as "still to come" (the project lands them one by one).
PLANNED: dict[str, tuple[str, ...]] = {
    "attacks": profiles.ATTACK_NAMES,
    "detectors": ("beniful", "strip", "scale_up", "ibd_psc", "teco"),
    "eliminators": ("beniful", "ft", "fp", "nad", "anp", "ibau"),
}

_REGISTRIES = {"attacks": attacks_mod, "detectors": detectors_mod, "eliminators": eliminators_mod}

#: Per-method keyword overrides that keep the *quick* profile inside its CPU budget (issue 5: all
#: notebooks within 20 minutes on 2 cores). They apply only when ``profile == "quick"``; the paper
#: profile runs every method with its defaults (its paper's settings). Listed on the book's setup page.
QUICK_BUDGET: dict[str, dict[str, dict[str, Any]]] = {
    "detectors": {
        # (BeniFul runs with its defaults: 100 VAE epochs. The quick budget once cut them to 40; since
        # the detector cache makes each model's fit a one-off that saved under a minute, and 40 epochs
        # left the VAE underfit: TPR at 5 % FPR on WaNet/IAD seeds 1-2 0.53-0.80, with 100 0.78-0.92.)
        # STRIP's paper uses N=100 overlays: ~3 images/s on one CPU core for the quick model
        "strip": {"n_overlays": 20},
    },
    "eliminators": {
        # every fine-tuning defense gets BeniFul's budget of 20 epochs over the clean data
        "ft": {"epochs": 20},
        "fp": {"epochs": 20},
        "nad": {"teacher_epochs": 5, "epochs": 15},
        # ANP's 2,000 mask-search iterations and I-BAU's 5 rounds take minutes per model on a CPU
        "anp": {"iterations": 100},
        "ibau": {"rounds": 2},
    },
    # table4's layer and clean-fraction sweeps fit 25 more BeniFul detectors; a layer1 VAE (8 x 28 x 28
    # features) takes ~75 s at 100 epochs on one core, so the sweeps compare every layer and fraction
    # at 40 epochs (the same budget for each row; the headline detectors keep 100)
    "ablation sweeps": {
        "beniful": {"vae_epochs": 40},
    },
}

#: Keyword arguments every notebook passes, on every profile: BeniFul's fitted detector is cached
#: (the same detector on the same model is fitted by table2, fig2, fig3, fig4, table4 and each
#: BeniFul repair; see ``BeniFulDetector.fit``).
NOTEBOOK_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "detectors": {"beniful": {"cache": True}},
    "eliminators": {"beniful": {"detector_kwargs": {"cache": True}}},
    "ablation sweeps": {"beniful": {"cache": True}},
}

#: Test images scored per attack in the quick profile's detection table (stratified; the natural mix
#: is these clean images plus the triggered copies of their non-target ones). None = all of them.
QUICK_DETECTION_TEST_IMAGES: int | None = 200

#: The middle layers of the package's PreAct-ResNet-18, shallow to deep.
LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")


# ---------------------------------------------------------------------------------------------
# Paths

repo_root, results_root, data_root, display_path = paths.repo_root, paths.results_root, paths.data_root, paths.display_path


# ---------------------------------------------------------------------------------------------
# Parameters

def _as_list(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise ValueError(f"{what} must be None, a list of names or a comma-separated string; got {value!r}")
    for v in items:
        if not isinstance(v, str):
            raise ValueError(f"{what} must hold names (strings); got {v!r}")
    if not items:
        raise ValueError(f"{what} is empty; pass None for the default set")
    return items


def choose(kind: str, names: Any = None) -> list[str]:
    """The names to run for ``kind`` ("attacks", "detectors", "eliminators").

    ``None`` = every planned name that is registered now, in table order. An explicit list (or
    comma-separated string) must name registered entries; otherwise ValueError lists the valid ones.
    """
    if kind not in _REGISTRIES:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(_REGISTRIES)}")
    avail = _REGISTRIES[kind].available()
    items = _as_list(names, kind)
    if items is None:
        return [n for n in PLANNED[kind] if n in avail]
    out = []
    for n in items:
        key = n.lower().replace("-", "_")
        if key not in avail:
            raise ValueError(f"unknown {kind[:-1]} {n!r}; valid names: {', '.join(avail) or '(none registered yet)'}")
        if key not in out:
            out.append(key)
    return out


def pending(kind: str) -> list[str]:
    """Planned names of ``kind`` that are not registered yet ("still to come")."""
    avail = set(_REGISTRIES[kind].available())
    return [n for n in PLANNED[kind] if n not in avail]


def pending_note(kind: str, chosen: Sequence[str] | None = None) -> str:
    """One deterministic line saying which planned entries the table shows and which are to come."""
    todo = pending(kind)
    shown = list(chosen) if chosen is not None else choose(kind)
    line = f"{kind}: {', '.join(shown) if shown else '(none yet)'}"
    return line + (f"; still to come: {', '.join(todo)}" if todo else "")


def method_params(profile: str, kind: str, names: Sequence[str], overrides: dict[str, dict[str, Any]] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Keyword arguments per method of ``kind``: the quick budget (quick profile only) updated by the
    notebook's ``overrides``. Overrides naming a method that is not run raise a ValueError."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"parameters given for {kind} that are not run: {', '.join(unknown)}; "
                         f"running: {', '.join(names) or '(none)'}")
    budget = QUICK_BUDGET.get(kind, {}) if profile == "quick" else {}
    out = {}
    for n in names:
        layers = [NOTEBOOK_DEFAULTS.get(kind, {}).get(n, {}), budget.get(n, {}), overrides.get(n, {})]
        merged: dict[str, Any] = {}
        for part in layers:
            for k, v in part.items():
                # nested detector keyword arguments are merged, not replaced
                merged[k] = {**merged[k], **v} if k == "detector_kwargs" and isinstance(merged.get(k), dict) else v
        out[n] = merged
    return out


def detection_test_images(profile: str, n_test: int | None = None) -> int | None:
    """How many test images a detection table scores: ``n_test`` when given, else the quick budget
    (quick profile) or all of them (any other profile)."""
    if n_test is not None:
        if not isinstance(n_test, int) or isinstance(n_test, bool) or n_test < 20:
            raise ValueError(f"n_test must be an integer >= 20 or None (all test images), got {n_test!r}")
        return n_test
    return QUICK_DETECTION_TEST_IMAGES if profile == "quick" else None


def test_subset(tm: Any, n: int | None, seed: int = 0) -> Any:
    """``tm`` with its test set cut to a stratified ``n`` images (unchanged when ``n`` is None or
    not smaller), so a detection row scores fewer inputs under the same protocol."""
    import dataclasses

    if n is None or n >= len(tm.test):
        return tm
    idx, _ = datasets.stratified_split(tm.test.targets, n / len(tm.test), seed + 7)
    return dataclasses.replace(tm, test=tm.test.subset(idx))


def kwargs_note(kwargs: dict[str, dict[str, Any]]) -> str:
    """One line naming every non-default method parameter, e.g. ``strip(n_overlays=20)``."""
    parts = [f"{n}({', '.join(f'{k}={v!r}' for k, v in kw.items())})" for n, kw in kwargs.items() if kw]
    return "non-default parameters: " + ("; ".join(parts) if parts else "none")


def _check_seeds(seed: Any) -> list[int]:
    seeds = [seed] if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else seed
    if isinstance(seeds, str):
        seeds = [s.strip() for s in seeds.split(",")]
        try:
            seeds = [int(s) for s in seeds]
        except ValueError:
            raise ValueError(f"seed must be a non-negative integer or a list of them; got {seed!r}") from None
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seed must be a non-negative integer or a list of them; got {seed!r}")
    return [int(s) for s in seeds]


@dataclass
class Run:
    """A notebook's validated parameters plus the loaded data (loaded once, shared by every model)."""

    profile: str
    dataset: str
    attacks: list[str]
    seeds: list[int]
    device: torch.device
    data: tuple[ImageDataset, ImageDataset]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.seeds[0]

    @property
    def device_label(self) -> str:
        return self.device.type

    @property
    def provenance(self) -> str:
        """The label every table and figure carries: profile / dataset / device / seeds."""
        return (f"profile={self.profile} / dataset={self.dataset} / device={self.device_label} / "
                f"seeds={','.join(str(s) for s in self.seeds)}")

    def zoo_kwargs(self, seed: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``zoo.get`` (same data object, so nothing is reloaded)."""
        return {"dataset": self.dataset, "profile": self.profile, "seed": self.seed if seed is None else seed,
                "device": str(self.device), "data": self.data}

    def columns(self, seed: int | None = None) -> dict[str, Any]:
        """Provenance columns for a result row."""
        return {"profile": self.profile, "device": self.device_label, "seed": self.seed if seed is None else seed}


def setup(profile: str = "quick", dataset: str | None = None, attacks: Any = None, seed: Any = 0,
          device: str = "auto", *, need_attacks: bool = True, load_data: bool = True, plot_style: bool = True,
          **extra: Any) -> Run:
    """Validate a notebook's parameters, load its data and set the plotting style.

    Every check runs before any model is trained: an unknown profile, dataset, attack, seed or
    device raises a ValueError naming the valid values; a data set missing from disk raises
    ``DatasetNotFoundError`` naming the ``data_scripts`` command that downloads it.
    """
    prof = profiles.get(profile)
    ds = datasets.check_name(dataset if dataset else prof.default_dataset)
    chosen = choose("attacks", attacks)
    if need_attacks and not chosen:
        raise ValueError(f"no attack to run; registered attacks: {', '.join(attacks_mod.available())}")
    seeds = _check_seeds(seed)
    dev = resolve_device(device)
    threads = os.environ.get("BENIFUL_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    data = datasets.load(ds, root=data_root()) if load_data else None
    if plot_style:
        style()
    return Run(prof.name, ds, chosen, seeds, dev, data, dict(extra))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Style

#: fixed colour per name within each family, so "beniful" or "blended" has the same colour in every figure
_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("none",) + profiles.ATTACK_NAMES,
    PLANNED["detectors"],
    PLANNED["eliminators"],
    ("clean", "triggered"),
)


def style() -> None:
    """seaborn's colour-blind palette on a white grid; PNG only (SVG ids break nbval)."""
    import matplotlib as mpl
    import seaborn as sns

    try:  # a kernel started with MPLBACKEND=Agg would store no figure at all: force inline there
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
            shell.run_line_magic("matplotlib", "inline")
    except ImportError:  # pragma: no cover - outside IPython
        pass
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.autolayout": False,
                         "axes.titlesize": "medium", "image.cmap": "viridis"})
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # pragma: no cover - outside IPython
        pass


def palette(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A stable colour for each name (colour-blind palette; BeniFul always gets the first colour)."""
    import seaborn as sns

    base = sns.color_palette("colorblind", 10)
    out = {}
    for n in names:
        fam = next((f for f in _FAMILIES if n in f), None)
        i = fam.index(n) if fam is not None else sorted(names).index(n)
        out[n] = base[i % len(base)]
    return out


# ---------------------------------------------------------------------------------------------
# Tables

def table_name(run: Run, name: str) -> str:
    """``name`` for the default seed 0, ``name_seeds0-1-2`` for any other seed list, so a multi-seed
    run writes beside the single-seed table instead of over it."""
    return name if run.seeds == [0] else f"{name}_seeds{'-'.join(str(s) for s in run.seeds)}"


def write_table(df: Any, run: Run, name: str) -> Path:
    """Write ``df`` to ``results/<profile>/<dataset>/<name>.csv`` (via :func:`beniful.results.write_table`);
    runs over seeds other than ``[0]`` get the suffix of :func:`table_name`."""
    return results.write_table(df, run.profile, run.dataset, table_name(run, name), root=results_root())


def show_table(df: Any, percent: Sequence[str] = (), digits: int = 1, caption: str | None = None):
    """An HTML table for the book: fractions in ``percent`` columns shown as percentages."""
    from IPython.display import HTML

    shown = df.copy()
    for c in percent:
        if c in shown:
            shown[c] = shown[c].map(lambda v: "–" if v != v else f"{100 * v:.{digits}f}")
    html = shown.to_html(index=False, escape=True, border=0, classes="dataframe beniful-table")
    if caption:
        html = f"<p><em>{caption}</em></p>" + html
    return HTML(html)


def seed_table(df: Any, index: str, columns: str, values: Sequence[str], percent: bool = True,
               digits: int = 1) -> Any:
    """Wide table of ``values`` per ``index`` x ``columns``: the mean over seeds, written
    ``mean ± std`` when the rows hold more than one seed (std over seeds, ddof 0), in % when
    ``percent``. Column names are ``"<value> <column>"``; row order is first appearance."""
    import pandas as pd

    n_seeds = df["seed"].nunique() if "seed" in df else 1
    scale = 100.0 if percent else 1.0
    g = df.groupby([index, columns], sort=False)[list(values)]
    mean, std = g.mean() * scale, g.std(ddof=0) * scale

    def cell(m: float, s: float) -> str:
        if m != m:
            return "–"
        return f"{m:.{digits}f}" if n_seeds < 2 else f"{m:.{digits}f} ± {s:.{digits}f}"

    out = pd.DataFrame({v: [cell(m, sd) for m, sd in zip(mean[v], std[v])] for v in values}, index=mean.index)
    wide = out.unstack(columns)
    order_cols = list(dict.fromkeys(df[columns]))
    wide = wide.reindex(columns=[(v, c) for v in values for c in order_cols])
    wide.columns = [f"{v} {c}" for v, c in wide.columns]
    return wide.reindex(list(dict.fromkeys(df[index]))).reset_index()


def _fact(text: str, ok: bool | None, value: str) -> str:
    mark = "not measured" if ok is None else ("yes" if ok else "no")
    return f"- {text}: {mark}" + (f" ({value})" if value else "")


def qualitative_detection(table: Any, min_auroc: float = 0.9) -> str:
    """The baselines' known qualitative behaviour (issue 4) as measured in a table2 frame: STRIP and
    SCALE-UP detect BadNets with AUROC >= ``min_auroc``; BeniFul has the best mean AUROC."""
    mean = table.groupby(["detector", "attack"])["auroc"].mean()
    lines = []
    for det, name in (("strip", "STRIP"), ("scale_up", "SCALE-UP")):
        v = mean.get((det, "badnets"))
        lines.append(_fact(f"{name} detects BadNets (AUROC >= {min_auroc:g})", None if v is None else v >= min_auroc,
                           "" if v is None else f"AUROC {v:.3f}"))
    per_det = table.groupby("detector")["auroc"].mean().sort_values(ascending=False)
    if "beniful" in per_det and len(per_det) > 1:
        lines.append(_fact("BeniFul has the highest mean AUROC over the attacks", per_det.index[0] == "beniful",
                           ", ".join(f"{d} {v:.3f}" for d, v in per_det.items())))
    return "\n".join(lines)


def qualitative_elimination(table: Any, removed: float = 0.10) -> str:
    """Known qualitative behaviour of fine-tuning (issue 4) as measured in a table3 frame: FT removes
    BadNets (ASR <= ``removed``), and Blended survives FT better than BadNets does."""
    asr = table.groupby(["eliminator", "attack"])["asr"].mean()
    b, bl = asr.get(("ft", "badnets")), asr.get(("ft", "blended"))
    lines = [_fact(f"FT removes BadNets (ASR <= {removed:g})", None if b is None else b <= removed,
                   "" if b is None else f"ASR after FT {b:.3f}"),
             _fact("Blended survives FT better than BadNets (higher ASR after FT)",
                   None if b is None or bl is None else bl > b,
                   "" if b is None or bl is None else f"Blended {bl:.3f} vs BadNets {b:.3f}")]
    return "\n".join(lines)


def glue(name: str, fig: Any) -> None:
    """Store ``fig`` under ``name`` for the book's other pages (myst-nb glue; hidden on this page).

    The landing page shows a summary figure this way without copying image files around. A no-op
    where myst-nb is not installed (it comes with jupyter-book).
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover
        return
    _glue(name, fig, display=False)


_ADDR = re.compile(r" at 0x[0-9a-fA-F]+")
_TMP = re.compile(r"/tmp/ipykernel_\d+/\d+\.py")


def sanitize(text: str) -> str:
    """Remove memory addresses and ipykernel temp paths (they change every run; nbval compares text)."""
    return _TMP.sub("<cell>", _ADDR.sub("", text))


# ---------------------------------------------------------------------------------------------
# Features (fig1) and figures

@torch.no_grad()
def layer_features(model: nn.Module, x: Tensor, layer: str, batch_size: int = 256, pool: bool = False) -> Tensor:
    """Output of submodule ``layer`` for ``x``, flattened to N x D (optionally channel-averaged)."""
    mod = check_layer(model, layer)
    dev = next(model.parameters()).device
    feats: list[Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Tensor) -> None:
        out = out.float()
        if pool and out.ndim == 4:
            out = out.mean(dim=(2, 3))
        feats.append(out.flatten(1).cpu())

    was_training = model.training
    model.eval()
    handle = mod.register_forward_hook(hook)
    try:
        for s in batches(len(x), batch_size):
            model(x[s].to(dev))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(feats) if feats else torch.empty(0)


def pca_2d(*groups: Tensor) -> list[np.ndarray]:
    """Project several feature groups with one PCA fitted on all of them (so they share axes)."""
    from sklearn.decomposition import PCA

    arrs = [g.numpy().astype(np.float64) for g in groups]
    both = np.concatenate(arrs)
    proj = PCA(n_components=2, random_state=0).fit(both)
    return [proj.transform(a) for a in arrs]


def separation(benign: np.ndarray, triggered: np.ndarray) -> float:
    """Centroid distance of two point clouds over their pooled standard deviation (a Fisher-like ratio)."""
    d = float(np.linalg.norm(benign.mean(0) - triggered.mean(0)))
    pooled = float(np.sqrt((benign.var(0).sum() + triggered.var(0).sum()) / 2))
    return d / max(pooled, 1e-12)


def plot_trigger_grid(models: dict[str, Any], n: int = 4, seed: int = 0):
    """Rows: ``n`` test images (non-target class); columns: clean, then each attack's triggered copy.

    Each triggered image is titled with the backdoored model's prediction, so a reader sees the
    trigger and that it works.
    """
    import matplotlib.pyplot as plt

    names = [a for a in models if a != "none"]
    first = models[names[0]]
    x, y = first.test.tensors()
    target = first.attack.target
    g = torch.Generator().manual_seed(seed)
    cand = torch.nonzero(y != target).flatten()
    pick = cand[torch.randperm(len(cand), generator=g)[:n]]
    xs, ys = x[pick], y[pick]
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.35 * (len(names) + 1), 1.45 * n), squeeze=False)
    cmap = "gray" if xs.shape[1] == 1 else None

    def show(ax, img: Tensor, title: str) -> None:
        arr = img.permute(1, 2, 0).numpy()
        ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
        ax.set_title(title, fontsize=8)

    clean_model = models.get("none")
    for i in range(n):
        pred = ""
        if clean_model is not None:
            dev = next(clean_model.model.parameters()).device
            pred = f" → {int(clean_model.model(xs[i:i + 1].to(dev)).argmax())}"
        show(axes[i, 0], xs[i], f"clean {int(ys[i])}{pred}")
        for j, a in enumerate(names, start=1):
            tm = models[a]
            dev = next(tm.model.parameters()).device
            tm.attack.to("cpu")
            xt = tm.attack.apply(xs[i:i + 1])
            p = int(tm.model(xt.to(dev)).argmax())
            show(axes[i, j], xt[0], f"{a} → {p}")
    fig.suptitle("clean test images and their triggered copies (→ model prediction)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_feature_pca(points: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], attacks: Sequence[str],
                     layers: Sequence[str]):
    """Grid of 2-D projections: rows = attacks, columns = layers; benign vs triggered points."""
    import matplotlib.pyplot as plt

    col = palette(["clean", "triggered"])
    fig, axes = plt.subplots(len(attacks), len(layers), figsize=(2.4 * len(layers), 2.2 * len(attacks)),
                             squeeze=False)
    for i, a in enumerate(attacks):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            benign, trig = points[(a, layer)]
            ax.scatter(benign[:, 0], benign[:, 1], s=5, alpha=0.5, color=col["clean"], label="benign", linewidths=0)
            ax.scatter(trig[:, 0], trig[:, 1], s=5, alpha=0.5, color=col["triggered"], label="triggered",
                       marker="^", linewidths=0)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(layer)
            if j == 0:
                ax.set_ylabel(a)
    axes[0, 0].legend(loc="best", fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig


def plot_metric_bars(df: Any, metric: str, hue: str, x: str = "attack", ylim: tuple[float, float] = (0, 1.02),
                     title: str | None = None, ax: Any = None):
    """Grouped bars of ``metric`` per ``x`` coloured by ``hue`` (fixed colours per name)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    order = list(dict.fromkeys(df[x]))
    hue_order = list(dict.fromkeys(df[hue]))
    sns.barplot(data=df, x=x, y=metric, hue=hue, order=order, hue_order=hue_order, palette=palette(hue_order),
                errorbar=None, ax=ax)
    ax.set_ylim(*ylim)
    ax.set_xlabel("")
    ax.set_ylabel(metric.replace("_", " "))
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return ax


# ---------------------------------------------------------------------------------------------
# Book pages that read the results tree (book/results.ipynb, book/claims.ipynb)

def collect_results(root: str | os.PathLike | None = None) -> list[tuple[str, str, str, Any]]:
    """Every ``results/<profile>/<dataset>/<name>.csv`` as ``(profile, dataset, name, DataFrame)``,
    quick profile first, then the others alphabetically."""
    import pandas as pd

    base = Path(root) if root is not None else results_root()
    found = []
    for path in sorted(base.glob("*/*/*.csv")):
        profile, dataset = path.parent.parent.name, path.parent.name
        found.append((profile, dataset, path.stem, pd.read_csv(path)))
    return sorted(found, key=lambda t: (t[0] != "quick", t[0], t[1], t[2]))


def describe_provenance(df: Any, profile: str, dataset: str) -> str:
    """``profile / dataset / device / seeds`` of a result table from its provenance columns; a GPU's
    own name (column ``device_name``, e.g. ``NVIDIA H200``) is added to ``cuda``."""
    devices = sorted(set(map(str, df["device"]))) if "device" in df else ["?"]
    if "device_name" in df and devices == ["cuda"]:
        names = sorted(set(map(str, df["device_name"])))
        devices = [f"cuda ({', '.join(names)})"]
    seeds = sorted(set(int(s) for s in df["seed"])) if "seed" in df else []
    return (f"profile={profile} / dataset={dataset} / device={','.join(devices)} / "
            f"seeds={','.join(map(str, seeds)) or '?'}")


#: the paper's quantitative claims (abstract of arXiv 2410.14723) that our tables can check
CLAIMS: tuple[dict[str, Any], ...] = (
    {"claim": "detection AUROC typically >= 0.92 (BeniFul, each attack)", "table": "table2"},
    {"claim": "BeniFul detection beats the baselines (mean AUROC)", "table": "table2"},
    {"claim": "elimination: ASR drop > 95% (BeniFul, each attack)", "table": "table3"},
    {"claim": "elimination: minimal ACC loss (BeniFul, <= 3 points)", "table": "table3"},
    {"claim": "Backdoor Consistency: on a model without backdoor, triggered inputs are flagged at about "
               "the FPR (<= 0.15 at a 5% target)", "table": "fig3"},
)


#: the data sets the paper reports on; any other data set under the paper profile is the paper's
#: recipe (model, schedule) on other data, never the paper's reproduction
PAPER_DATASETS = ("cifar10", "tiny-imagenet")


def setting_note(profile: str, dataset: str) -> str:
    """One sentence saying what a (profile, dataset) pair is, for every book page that shows its
    numbers: only the paper profile on the paper's data sets is the like-for-like comparison."""
    if profile == "quick":
        return (f"Quick profile on {dataset}: a narrow network and 8 epochs on CPU; evidence about the method, "
                "not the paper's numbers.")
    if profile == "paper" and dataset not in PAPER_DATASETS:
        return (f"The paper profile's model and schedule (PreAct-ResNet-18 at width 64, 100 epochs) on {dataset}, "
                "run on a GPU (`benchmarks/gpu_check.py`): the paper's recipe on other data, not its reproduction.")
    if profile == "paper":
        return f"The paper profile on {dataset}: the paper's setting, comparable with its numbers."
    return f"Profile {profile!r} on {dataset}."


def read_result(profile: str, dataset: str, name: str, root: str | os.PathLike | None = None) -> Any:
    """``results/<profile>/<dataset>/<name>.csv`` or its multi-seed version (``<name>_seeds0-1-2.csv``),
    whichever covers most seeds; None when neither exists."""
    import pandas as pd

    base = Path(root) if root is not None else results_root()
    best, n_best = None, 0
    for p in sorted((base / profile / dataset).glob(f"{name}*.csv")):
        if p.stem != name and not p.stem.startswith(f"{name}_seeds"):
            continue
        df = pd.read_csv(p)
        df.attrs["source"] = f"{profile}/{dataset}/{p.name}"
        n = df["seed"].nunique() if "seed" in df else 1
        if n > n_best:
            best, n_best = df, n
    return best


#: BeniFul's headline numbers per attack, the column they come from, and the issue's target
HEADLINE_METRICS: tuple[tuple[str, str, str, float], ...] = (
    ("AUROC", "table2", "auroc", 0.95),
    ("TPR at 5% FPR", "table2", "tpr_at_5fpr", 0.90),
    ("ASR after repair", "table3", "asr", 0.05),
    ("ACC drop of the repair", "table3", "acc_drop", 0.02),
    ("clean model: triggered inputs flagged", "fig3", "flag_rate_triggered", 0.15),
)


def headline_comparison(settings: Sequence[tuple[str, str]], root: str | os.PathLike | None = None) -> Any:
    """BeniFul's headline numbers (:data:`HEADLINE_METRICS`) per attack for each (profile, dataset):
    one row per setting x metric x attack with the mean and std over the seeds the tables hold, the
    seeds, the target and the file (with its provenance) the number comes from. Used to set the quick profile beside the paper recipe on the same data."""
    import pandas as pd

    rows = []
    for profile, dataset in settings:
        for label, name, col, target in HEADLINE_METRICS:
            df = read_result(profile, dataset, name, root)
            if df is None:
                continue
            source = f"`{df.attrs['source']}` ({describe_provenance(df, profile, dataset)})"
            if name == "table2":
                df = df[df.detector == "beniful"]
            elif name == "table3":
                df = df[df.eliminator == "beniful"].assign(acc_drop=lambda d: d.acc_before - d.acc)
            else:
                df = df[df.model == "clean"]
            for attack, g in df.groupby("attack", sort=False):
                rows.append({"profile": profile, "dataset": dataset, "metric": label, "attack": attack,
                             "mean": float(g[col].mean()), "std": float(g[col].std(ddof=0)) if len(g) > 1 else 0.0,
                             "seeds": ",".join(str(int(s)) for s in sorted(g["seed"])) if "seed" in g else "?",
                             "target": target, "higher_is_better": col in ("auroc", "tpr_at_5fpr"),
                             "source": source})
    return pd.DataFrame(rows, columns=["profile", "dataset", "metric", "attack", "mean", "std", "seeds", "target",
                                       "higher_is_better", "source"])


def claims_table(profile: str = "quick", dataset: str | None = None, root: str | os.PathLike | None = None,
                 acc_loss: float = 0.03) -> Any:
    """The paper's claims next to our measurement for one profile/dataset (``not measured yet`` when
    the table or BeniFul's rows are not there)."""
    import pandas as pd

    dataset = dataset or profiles.get(profile).default_dataset
    base = Path(root) if root is not None else results_root()

    def read(name: str) -> Any:
        return read_result(profile, dataset, name, base)

    def spread(values: Any, fmt: str) -> str:
        # mean, and +- std over seeds when there is more than one
        mean = format(values.mean(), fmt)
        return mean if len(values) < 2 else f"{mean} ± {format(values.std(ddof=0), fmt.lstrip('+'))}"

    rows = []
    t2, t3 = read("table2"), read("table3")
    b2 = t2[t2.detector == "beniful"] if t2 is not None and "detector" in t2 else None
    b3 = t3[t3.eliminator == "beniful"] if t3 is not None and "eliminator" in t3 else None
    missing = "not measured yet"

    if b2 is not None and len(b2):
        per = b2.groupby("attack", sort=False)["auroc"].mean()
        ours = ", ".join(f"{a} {spread(g, '.3f')}" for a, g in b2.groupby("attack", sort=False)["auroc"])
        rows.append((CLAIMS[0]["claim"], ours, "yes" if (per >= 0.92).all() else f"{int((per >= 0.92).sum())}/{len(per)} attacks"))
        # every detector's rows: the single-seed table when the multi-seed one holds BeniFul only
        single = base / profile / dataset / "table2.csv"
        t2_all = t2 if t2["detector"].nunique() > 1 or not single.is_file() else pd.read_csv(single)
        means = t2_all.groupby("detector")["auroc"].mean().sort_values(ascending=False)
        ours = ", ".join(f"{d} {v:.3f}" for d, v in means.items())
        rows.append((CLAIMS[1]["claim"], ours, "yes" if means.index[0] == "beniful" else f"no (best: {means.index[0]})"))
    else:
        rows += [(CLAIMS[0]["claim"], missing, "–"), (CLAIMS[1]["claim"], missing, "–")]

    if b3 is not None and len(b3) and {"asr_before", "acc_before"} <= set(b3.columns):
        drop = 1 - b3["asr"] / b3["asr_before"].clip(lower=1e-9)
        per = drop.groupby(b3["attack"], sort=False).mean()
        ours = ", ".join(f"{a} {spread(100 * g, '.1f')}%" for a, g in drop.groupby(b3["attack"], sort=False))
        rows.append((CLAIMS[2]["claim"], ours, "yes" if (per > 0.95).all() else f"{int((per > 0.95).sum())}/{len(per)} attacks"))
        loss_all = b3["acc_before"] - b3["acc"]
        loss = loss_all.groupby(b3["attack"], sort=False).mean()
        ours = ", ".join(f"{a} {spread(100 * g, '+.1f')}" for a, g in loss_all.groupby(b3["attack"], sort=False))
        rows.append((CLAIMS[3]["claim"], ours, "yes" if (loss <= acc_loss).all() else f"{int((loss <= acc_loss).sum())}/{len(loss)} attacks"))
    else:
        rows += [(CLAIMS[2]["claim"], missing, "–"), (CLAIMS[3]["claim"], missing, "–")]
    f3 = read("fig3")
    c3 = f3[f3.model == "clean"] if f3 is not None and "model" in f3 else None
    if c3 is not None and len(c3):
        per = c3.groupby("attack", sort=False)["flag_rate_triggered"].mean()
        ours = ", ".join(f"{a} {spread(g, '.2f')}" for a, g in c3.groupby("attack", sort=False)["flag_rate_triggered"])
        rows.append((CLAIMS[4]["claim"], ours, "yes" if (per <= 0.15).all() else f"{int((per <= 0.15).sum())}/{len(per)} attacks"))
    else:
        rows.append((CLAIMS[4]["claim"], missing, "–"))
    return pd.DataFrame(rows, columns=["paper's claim", f"ours ({profile}, {dataset})", "holds"])


def _defaults(kind: str, name: str) -> dict[str, Any]:
    import inspect

    reg = {"attacks": attacks_mod.ATTACKS, "detectors": detectors_mod.DETECTORS,
           "eliminators": eliminators_mod.ELIMINATORS}[kind]
    params: dict[str, Any] = {}
    for klass in inspect.getmro(reg.get(name)):  # most derived first; a base only through **kwargs
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(klass.__init__).parameters.values()
        for p in sig:
            if p.default is not inspect.Parameter.empty and p.name not in params:
                params[p.name] = p.default
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig):
            break
    return params


def default_of(kind: str, name: str, param: str) -> Any:
    """The code's default of one constructor parameter (``"–"`` while ``name`` is not registered)."""
    if name not in _REGISTRIES[kind].available():
        return "–"
    return _defaults(kind, name).get(param, "–")


def parameter_table(kind: str) -> Any:
    """Every constructor parameter and default of each registered ``kind`` (attacks, detectors,
    eliminators), read from the code so the setup page cannot drift from it."""
    import pandas as pd

    skip = {"self", "kwargs", "args", "device", "progress", "seed", "target", "rate", "pattern", "detector"}
    rows = []
    for name in _REGISTRIES[kind].available():
        params = {k: v for k, v in _defaults(kind, name).items() if k not in skip}
        rows.append({kind[:-1]: name, "parameters (defaults)": ", ".join(f"{k}={v!r}" for k, v in params.items())})
    return pd.DataFrame(rows)
