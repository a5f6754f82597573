"""How much work each method gets in a notebook: each profile's budget (the quick profile's CPU
budget, the smoke profile's toy one) and the settings every notebook passes, merged with a
notebook's own overrides into one set of keyword arguments.

Why here and not in the methods: a method's defaults are its paper's settings (the paper profile
runs them unchanged); only the quick and smoke profiles change some of them. The quick profile runs
every baseline eliminator at its paper's settings scaled only for its clean-data size
(:mod:`beniful.paper_settings`, the same passes over the clean data); the smoke profile cuts every
slow loop to a turn or two. A profile's budget
is its entry of :data:`BUDGETS` (and :data:`DETECTION_TEST_IMAGES`), by name: a profile without one
runs every method at its defaults. The book's setup page lists the quick values.
"""
from __future__ import annotations

from typing import Any, Sequence

from .. import datasets, profiles
from ..case import Case
from ..eliminators import ELIMINATORS
from ..paper_settings import paper_budget

__all__ = ["QUICK_CLEAN_IMAGES", "QUICK_BUDGET", "SMOKE_BUDGET", "BUDGETS", "NOTEBOOK_DEFAULTS", "QUICK_DETECTION_TEST_IMAGES",
           "DETECTION_TEST_IMAGES", "LAYERS", "budget", "method_params", "detection_test_images", "test_subset",
           "kwargs_note", "LEFT_OUT", "panel", "ABLATION_DATASETS", "ablation_datasets"]


#: The defender's clean images in the quick profile (5% of mnist5k's 4,000 training images): the size
#: the baselines' published settings are scaled to (:mod:`beniful.paper_settings`)
QUICK_CLEAN_IMAGES = 200

def _differing(budget: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The entries of an eliminator budget that differ from the constructors' defaults (so a table's
    "non-default parameters" line names only what was changed)."""
    out = {}
    for name, kw in budget.items():
        defaults = ELIMINATORS.defaults(name)
        diff = {k: v for k, v in kw.items() if defaults.get(k) != v}
        if diff:
            out[name] = diff
    return out


#: Per-method keyword overrides that keep the *quick* profile inside its CPU budget (every notebook
#: within minutes on 2 cores). They apply only to the quick profile (its entry of :data:`BUDGETS`); the paper
#: profile runs every method with its defaults (its paper's settings). Listed on the book's setup page.
QUICK_BUDGET: dict[str, dict[str, dict[str, Any]]] = {
    "detectors": {
        # (BeniFul runs with its defaults: 100 VAE epochs. The quick budget once cut them to 40; since
        # the detector cache makes each model's fit a one-off that saved under a minute, and 40 epochs
        # left the VAE underfit: TPR at 5 % FPR on WaNet/IAD seeds 1-2 0.53-0.80, with 100 0.78-0.92.)
        # STRIP's paper uses N=100 overlays: ~3 images/s on one CPU core for the quick model
        "strip": {"n_overlays": 20},
        # (The Neural Trojans autoencoder runs with its defaults. Its paper gives no recipe at CIFAR
        # scale, so the defaults are ours and were sized for this profile: 500 steps on ~140 fit
        # images, ~12 s a fit on one CPU core beside other jobs, about a BeniFul VAE fit there.)
    },
    # every baseline at its paper's settings, scaled only for the 200 clean images (the same passes
    # over the clean data; beniful.paper_settings): FT 100 and FP 100 epochs, NAD 10 + 20, ANP 800 mask
    # updates (the paper's 2,000 on 500 images), I-BAU 5 rounds with 1% of each batch perturbed. Only
    # the values that differ from the constructor defaults are listed (ANP's iterations). Measured on
    # quick mnist5k BadNets seed 0, one CPU core beside another job: FT 100 epochs 21 s, NAD 5 s,
    # I-BAU 39 s, FP 44 s (a test run beside it), ANP 0.28 s a mask update, i.e. ~3.8 min at 800
    #
    # Two cuts below the papers, forced by the CPU budget (CI re-runs every notebook on both quick data
    # sets within its time limit): FP fine-tunes 20 epochs after pruning (BackdoorBench: 100; ~45 s a
    # model at 100) and ANP runs 100 mask updates (the rule: 800; 0.28 s each, ~3.8 min a model at 800,
    # ~38 min for the ten quick models). Measured on quick mnist5k BadNets (seed 0): ANP's ASR 0.924
    # after 200 updates and 0.116 after 400, so ANP here is WEAKER than at its paper's setting; the
    # setup page and the limitations page say so. The equal-budget view of table3 gives FP BeniFul-BE's
    # step count (40 epochs). ``eliminator_params={"anp": {"iterations": 800}, "fp": {"epochs": 100}}``
    # runs the papers' settings.
    "eliminators": {**_differing(paper_budget(QUICK_CLEAN_IMAGES)), "fp": {"epochs": 20}, "anp": {"iterations": 100}},
    # table4's layer and clean-fraction sweeps fit 25 more BeniFul detectors per data set, fig4's
    # rate, latent-size and clean-fraction sweeps 12; a layer1 VAE (8 x 28 x 28 features) takes ~75 s
    # at 100 epochs on one core, so the sweeps compare every point at 40 epochs (the same budget for
    # each point of a sweep; the headline detectors of table2 and fig3 keep 100)
    "ablation sweeps": {
        "beniful": {"vae_epochs": 40},
    },
}

#: The smoke profile's budget (CI: every notebook on CIFAR-10- and Tiny-ImageNet-shaped data within
#: minutes): every slow loop cut to one or two turns, so each code path runs once. Not a setting to
#: measure anything with.
SMOKE_BUDGET: dict[str, dict[str, dict[str, Any]]] = {
    "detectors": {
        # 20 of the autoencoder's 500 steps (ours, like its defaults): 500 took ~50 s at 64x64 on a
        # CPU core beside other jobs
        "autoencoder": {"steps": 20},
        "beniful": {"vae_epochs": 2},
        "strip": {"n_overlays": 4},
        # 3 of the 11 corruption types (a noise, a blur, a colour change): all 11 x 5 severities scored
        # ~5 images/s at 64x64, 3 of table2's 5 minutes on Tiny ImageNet
        "teco": {"corruptions": ("gaussian_noise", "defocus_blur", "contrast")},
    },
    "eliminators": {
        "beniful": {"epochs": 2, "detector_kwargs": {"vae_epochs": 2}},
        "ft": {"epochs": 1},
        "fp": {"epochs": 1},
        "nad": {"teacher_epochs": 1, "epochs": 1},
        "anp": {"iterations": 3},
        # one round, 2 fixed-point steps, 2 outer steps: the hypergradient is the slow part (50-85 s a
        # model on 64x64 inputs at the method's K=5 and 10 steps)
        "ibau": {"rounds": 1, "K": 2, "min_steps": 2},
    },
    "ablation sweeps": {
        "beniful": {"vae_epochs": 2},
    },
}

#: Each profile's method budget, by profile name; a profile not listed runs every method at its
#: defaults (the paper profile: its paper's settings)
BUDGETS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {"quick": QUICK_BUDGET, "smoke": SMOKE_BUDGET}

#: Methods a profile leaves out on one of its data sets, by profile name, kind and data set (read
#: through :func:`panel`). The quick profile runs ANP and I-BAU, the two adversarial-search
#: baselines, on Fashion-MNIST only, the benchmark on which every baseline is compared on equal
#: terms: measured with one CPU thread per kernel (quick WaNet on mnist5k, seed 0) I-BAU takes 107 s
#: and ANP 47 s a model (FT 34 s, BeniFul-BE 66 s): on mnist5k's five models the two would add about
#: 13 CPU-minutes, which a cold CI run (every notebook re-executed within its time limit on 2 cores)
#: cannot spare. On mnist5k table3 runs BeniFul-BE, FT, FP, NAD, the ``ft_pool`` control and the
#: equal-budget view. Naming the eliminators (``-p eliminators
#: '["anp", "ibau"]'``) runs them on every data set.
LEFT_OUT: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "quick": {"eliminators": {"mnist5k": ("anp", "ibau")}},
}


def panel(profile: str, kind: str, names: Sequence[str], dataset: str, named: bool = False) -> list[str]:
    """The methods of ``names`` that a notebook runs on ``dataset``.

    Args:
        profile: a profile name (any spelling ``profiles.get`` accepts).
        kind: ``"detectors"`` or ``"eliminators"``.
        names: the methods the notebook runs (e.g. from ``nb.choose``), in table order.
        dataset: the data set about to be run.
        named: the user named the methods (a notebook parameter that is not None): then every one
            runs on every data set and :data:`LEFT_OUT` does not apply.

    Returns:
        ``names`` without the ones the profile leaves out on ``dataset``, order kept.
    """
    if named:
        return list(names)
    out = LEFT_OUT.get(_profile_name(profile), {}).get(kind, {}).get(dataset, ())
    return [n for n in names if n not in out]


#: The data sets the ablation notebooks (table4, fig4) run when the user names none, by profile name
#: (read through :func:`ablation_datasets`); a profile not listed runs its default set. The quick
#: profile ablates on Fashion-MNIST, the benchmark data set: table4 and fig4 on both quick data sets
#: take about 46 CPU-minutes (table4 alone 32 on one core: the four-layer sweep 12, the eleven
#: ingredient repairs 12, the form x lambda repairs 7), more than a cold CI run on 2 cores can spare
#: beside the headline tables. Without Fashion-MNIST on disk they run on mnist5k.
ABLATION_DATASETS: dict[str, tuple[str, ...]] = {"quick": ("fashion-mnist",)}


def ablation_datasets(profile: str, dataset: Any = None) -> Any:
    """The ``dataset`` argument an ablation notebook passes to ``nb.setup``.

    Args:
        profile: a profile name.
        dataset: the notebook's ``dataset`` parameter; anything but ``None`` is returned unchanged.

    Returns:
        ``dataset`` when given; else the profile's :data:`ABLATION_DATASETS` that are on disk, or
        ``None`` (the profile's default set) when it has none or none of them is on disk.
    """
    if dataset is not None:
        return dataset
    names = ABLATION_DATASETS.get(_profile_name(profile), ())
    if not names:
        return None
    from .run import resolve_datasets  # run imports this module

    on_disk, _ = resolve_datasets(profile, None)
    kept = [d for d in names if d in on_disk]
    return kept or None


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

#: Test images a detection table scores per attack, by profile name (stratified); a profile not
#: listed scores all of them. Smoke: 60 (of its 200 CIFAR-10 / 400 Tiny ImageNet test images).
DETECTION_TEST_IMAGES: dict[str, int | None] = {"quick": QUICK_DETECTION_TEST_IMAGES, "smoke": 60}

#: The middle layers of the package's PreAct-ResNet-18, shallow to deep.
LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")



def budget(profile: str, kind: str) -> dict[str, dict[str, Any]]:
    """A profile's method budget for one kind of method (its :data:`BUDGETS` entry).

    Args:
        profile: a profile name (any spelling ``profiles.get`` accepts).
        kind: ``"detectors"``, ``"eliminators"`` or ``"ablation sweeps"``.

    Returns:
        ``{method: keyword overrides}``; empty for a profile without a budget (every method at its defaults).
    """
    return BUDGETS.get(_profile_name(profile), {}).get(kind, {})


def _profile_name(profile: str) -> str:
    return profiles.get(profile).name if profile in profiles.PROFILES else str(profile)


def method_params(profile: str, kind: str, names: Sequence[str], overrides: dict[str, dict[str, Any]] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Keyword arguments per method of ``kind``: the profile's budget (:func:`budget`) updated by the
    notebook's ``overrides``. Overrides naming a method that is not run raise a ValueError."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"parameters given for {kind} that are not run: {', '.join(unknown)}; "
                         f"running: {', '.join(names) or '(none)'}")
    own = budget(profile, kind)
    out = {}
    for n in names:
        layers = [NOTEBOOK_DEFAULTS.get(kind, {}).get(n, {}), own.get(n, {}), overrides.get(n, {})]
        merged: dict[str, Any] = {}
        for part in layers:
            for k, v in part.items():
                # nested detector keyword arguments are merged, not replaced
                merged[k] = {**merged[k], **v} if k == "detector_kwargs" and isinstance(merged.get(k), dict) else v
        out[n] = merged
    return out


def detection_test_images(profile: str, n_test: int | None = None) -> int | None:
    """How many test images a detection table scores: ``n_test`` when given, else the profile's
    entry of :data:`DETECTION_TEST_IMAGES` (all of them for a profile without one)."""
    if n_test is not None:
        if not isinstance(n_test, int) or isinstance(n_test, bool) or n_test < 20:
            raise ValueError(f"n_test must be an integer >= 20 or None (all test images), got {n_test!r}")
        return n_test
    return DETECTION_TEST_IMAGES.get(_profile_name(profile))


def test_subset(tm: Case, n: int | None, seed: int = 0) -> Case:
    """``tm`` with its test set cut to a stratified ``n`` images (unchanged when ``n`` is None or
    not smaller), so a detection row scores fewer inputs under the same protocol. Exactly ``n``
    (:func:`beniful.datasets.stratified_sample`): with fewer than half an image per class (200
    Tiny ImageNet classes) a per-class rounding would leave nothing to score."""
    if n is None or n >= len(tm.test):
        return tm
    idx = datasets.stratified_sample(tm.test.targets, n, seed + 7)
    return tm.replace(test=tm.test.subset(idx))


def kwargs_note(kwargs: dict[str, dict[str, Any]]) -> str:
    """One line naming every non-default method parameter, e.g. ``strip(n_overlays=20)``."""
    parts = [f"{n}({', '.join(f'{k}={v!r}' for k, v in kw.items())})" for n, kw in kwargs.items() if kw]
    return "non-default parameters: " + ("; ".join(parts) if parts else "none")


