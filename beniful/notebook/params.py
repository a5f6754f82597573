"""Every method's parameters and defaults, read from the code, for the book's setup page."""
from __future__ import annotations

from typing import Any, Mapping

from .run import registry

__all__ = ["parameter_table", "default_of", "family_table", "paper_settings_table", "per_dataset"]


def _show(value: Any) -> str:
    """A default as the setup page prints it (a read-only mapping as the dict it is)."""
    return repr(dict(value)) if isinstance(value, Mapping) else repr(value)


def per_dataset(value: Any, dataset: str, default: Any) -> Any:
    """A notebook parameter given once for all data sets or per data set, as ``dataset`` reads it.

    Bounds such as fig3's ``min_backdoored_flags`` are a number or a ``{dataset: number}`` mapping;
    a data set the mapping does not name gets ``default``.

    Args:
        value: one value for every data set, or a mapping from data set name to value.
        dataset: the data set being checked.
        default: the value for a data set the mapping leaves out.

    Returns:
        The value that applies to ``dataset``.
    """
    return value.get(dataset, default) if isinstance(value, Mapping) else value


def default_of(kind: str, name: str, param: str) -> Any:
    """The code's default of one constructor parameter (``"–"`` while ``name`` is not registered)."""
    if name not in registry(kind).available():
        return "–"
    return registry(kind).defaults(name).get(param, "–")


def parameter_table(kind: str) -> Any:
    """Every constructor parameter and default of each registered ``kind`` (attacks, detectors,
    eliminators), read from the code so the setup page cannot drift from it."""
    import pandas as pd

    reg = registry(kind)
    rows = []
    for name in reg.available():
        # the parameters that are part of params() (what a result depends on), with their defaults
        skip = reg.get(name).params_exclude
        params = {k: v for k, v in reg.defaults(name).items() if k not in skip}
        rows.append({kind[:-1]: name, "parameters (defaults)": ", ".join(f"{k}={_show(v)}" for k, v in params.items())})
    return pd.DataFrame(rows)


def family_table() -> Any:
    """Every per-family method setting (:mod:`beniful.method_defaults`) with the constructor default
    it replaces and its source, for the setup page.

    Returns:
        A DataFrame with ``family, kind, method, param, value, default, source``.
    """
    import pandas as pd

    from ..method_defaults import FAMILIES

    rows = [{"family": family, "kind": s.kind, "method": s.method, "param": s.param, "value": repr(s.value),
             "default": repr(default_of(s.kind, s.method, s.param)), "source": s.source}
            for family, settings in FAMILIES.items() for s in settings]
    return pd.DataFrame(rows, columns=["family", "kind", "method", "param", "value", "default", "source"])


def paper_settings_table(n_clean: int) -> Any:
    """Every baseline eliminator's published setting (:mod:`beniful.paper_settings`), the value it
    takes for ``n_clean`` clean images, the constructor default, the scaling rule and the source,
    for the setup page.

    Args:
        n_clean: the defender's clean images of the profile shown (e.g. ``len(tm.clean)``).

    Returns:
        A DataFrame with ``method, param, paper, paper_images, rule, value, default, source, note``.
    """
    import pandas as pd

    from ..paper_settings import PAPER_SETTINGS

    cols = ["method", "param", "paper", "paper_images", "rule", "value", "default", "source", "note"]
    rows = [{"method": s.method, "param": s.param, "paper": repr(s.paper),
             "paper_images": s.paper_images if s.paper_images is not None else "",
             "rule": s.rule(), "value": repr(s.value_for(n_clean)),
             "default": repr(default_of("eliminators", s.method, s.param)), "source": s.source, "note": s.note}
            for s in PAPER_SETTINGS]
    return pd.DataFrame(rows, columns=cols)
