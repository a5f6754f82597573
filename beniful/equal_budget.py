"""The equal-budget view: every fine-tuning defense gets as many optimisation steps as BeniFul-BE.

Each baseline's own setting is its paper's (:mod:`beniful.paper_settings`); BeniFul-BE's 40 epochs
were chosen on a validation split. A reader comparing the two cannot tell whether a difference comes
from the method or from the budget, so this second view gives every defense that fine-tunes the
network (FT, FP's fine-tuning after pruning, NAD's teacher plus student, and the ``ft_pool`` control)
the same number of SGD steps, on the same clean data, at the same batch size, as BeniFul-BE at its
defaults makes for the case. ANP and I-BAU do not fine-tune (ANP learns masks, I-BAU runs a minimax
with its own solver), so they have no place here.

NAD spends its steps on two networks; they are split in the ratio of its own defaults (teacher 10 :
student 20 epochs), so its total equals BeniFul-BE's.

Usage from a notebook::

    over = equal_budget(tm)                      # {"ft": {"epochs": 40}, "nad": {...}, ...}
    rows = [elimination_row(tm, name, **kw) for name, kw in over.items()]
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from . import eliminators, method_defaults
from .case import Case
from .eliminators.base import steps_per_epoch

__all__ = ["FINE_TUNING_DEFENSES", "equal_budget", "equal_budget_table", "reference_steps"]

#: the defenses whose optimisation is fine-tuning of the network's weights on the clean data
FINE_TUNING_DEFENSES: tuple[str, ...] = ("ft", "fp", "nad", "ft_pool")
REFERENCE = "beniful"


def _n_and_dataset(tm: Case | int, dataset: str | None) -> tuple[int, str | None]:
    if isinstance(tm, Case):
        from .utils import as_tensors

        return len(as_tensors(tm.clean)[1]), tm.dataset
    if isinstance(tm, bool) or not isinstance(tm, int) or tm < 2:
        raise ValueError(f"pass a Case or the number of clean images (an integer >= 2), got {tm!r}")
    return tm, dataset


def _build(name: str, dataset: str | None, kwargs: Mapping[str, Any]) -> eliminators.Eliminator:
    return eliminators.build(name, **method_defaults.merged("eliminators", name, dataset, kwargs))


def reference_steps(tm: Case | int, dataset: str | None = None, **reference: Any) -> tuple[int, int]:
    """BeniFul-BE's optimisation steps and batch size for the case.

    Args:
        tm: the case, or the number of the defender's clean images.
        dataset: the data set (for its per-family defaults) when ``tm`` is a number.
        **reference: BeniFul-BE parameters other than its defaults (none for the equal-budget view).

    Returns:
        ``(steps, batch_size)``.
    """
    n, dataset = _n_and_dataset(tm, dataset)
    ref = _build(REFERENCE, dataset, reference)
    return ref.optimisation_steps(n), ref.batch_size


def equal_budget(tm: Case | int, methods: Sequence[str] = FINE_TUNING_DEFENSES, dataset: str | None = None,
                 **reference: Any) -> dict[str, dict[str, Any]]:
    """Keyword overrides that give each fine-tuning defense BeniFul-BE's number of optimisation steps.

    Each method gets BeniFul-BE's batch size and the epochs that make its step count equal BeniFul-BE's
    (:meth:`~beniful.eliminators.base.Eliminator.optimisation_steps`); with the same batch size this
    is BeniFul-BE's epochs for FT, FP and ``ft_pool``, and for NAD teacher plus student epochs summing
    to them. Only parameters that differ from the method's (per-family) defaults are returned.

    Args:
        tm: the case, or the number of the defender's clean images.
        methods: some of :data:`FINE_TUNING_DEFENSES`.
        dataset: the data set (for the per-family defaults) when ``tm`` is a number.
        **reference: BeniFul-BE parameters other than its defaults (e.g. ``epochs=20``).

    Returns:
        ``{method: keyword overrides}`` in the order of ``methods``.

    Raises:
        ValueError: a method that does not fine-tune, or an invalid ``tm``.
    """
    bad = [m for m in methods if m not in FINE_TUNING_DEFENSES]
    if bad:
        raise ValueError(f"no equal-budget setting for {', '.join(map(repr, bad))}: only the fine-tuning defenses "
                         f"{', '.join(FINE_TUNING_DEFENSES)} have one (ANP and I-BAU do not fine-tune)")
    n, dataset = _n_and_dataset(tm, dataset)
    steps, bs = reference_steps(n, dataset, **reference)
    per_epoch = steps_per_epoch(n, bs)
    epochs = steps // per_epoch if per_epoch else 0
    out: dict[str, dict[str, Any]] = {}
    for name in methods:
        default = _build(name, dataset, {})
        want: dict[str, Any] = {"batch_size": bs}
        if name == "nad":
            own_t, own_s = default.teacher_epochs, default.epochs  # type: ignore[attr-defined]
            teacher = round(epochs * own_t / max(1, own_t + own_s))
            want.update(teacher_epochs=teacher, epochs=epochs - teacher)
        else:
            want["epochs"] = epochs
        out[name] = {k: v for k, v in want.items() if getattr(default, k) != v}
    return out


def equal_budget_table(tm: Case | int, methods: Sequence[str] = FINE_TUNING_DEFENSES, dataset: str | None = None,
                       **reference: Any) -> Any:
    """The equal-budget settings and the steps they give, beside each method's own (paper) setting.

    Args:
        tm: the case, or the number of the defender's clean images.
        methods: some of :data:`FINE_TUNING_DEFENSES`.
        dataset: the data set when ``tm`` is a number.
        **reference: BeniFul-BE parameters other than its defaults.

    Returns:
        A DataFrame with ``method, overrides, epochs, batch_size, steps, own_epochs, own_steps,
        reference_steps``; ``steps`` equals ``reference_steps`` on every row.
    """
    import pandas as pd

    n, dataset = _n_and_dataset(tm, dataset)
    ref_steps, _ = reference_steps(n, dataset, **reference)
    rows = []
    for name, kw in equal_budget(n, methods, dataset, **reference).items():
        own, eq = _build(name, dataset, {}), _build(name, dataset, kw)
        rows.append({"method": name, "overrides": repr(kw), "epochs": eq.clean_epochs(n), "batch_size": eq.batch_size,
                     "steps": eq.optimisation_steps(n), "own_epochs": own.clean_epochs(n),
                     "own_steps": own.optimisation_steps(n), "reference_steps": ref_steps})
    return pd.DataFrame(rows)
