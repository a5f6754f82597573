"""Every method's parameters and defaults, read from the code, for the book's setup page."""
from __future__ import annotations

import inspect
from typing import Any

from ..attacks import ATTACKS
from ..detectors import DETECTORS
from ..eliminators import ELIMINATORS
from ..registry import Registry

_BY_KIND: dict[str, Registry] = {"attacks": ATTACKS, "detectors": DETECTORS, "eliminators": ELIMINATORS}


def _registry(kind: str) -> Registry:
    if kind not in _BY_KIND:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(_BY_KIND)}")
    return _BY_KIND[kind]

__all__ = ["parameter_table", "default_of"]


def _defaults(kind: str, name: str) -> dict[str, Any]:
    reg = _registry(kind)
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
    if name not in _registry(kind).available():
        return "–"
    return _defaults(kind, name).get(param, "–")


def parameter_table(kind: str) -> Any:
    """Every constructor parameter and default of each registered ``kind`` (attacks, detectors,
    eliminators), read from the code so the setup page cannot drift from it."""
    import pandas as pd

    skip = {"self", "kwargs", "args", "device", "progress", "seed", "target", "rate", "pattern", "detector"}
    rows = []
    for name in _registry(kind).available():
        params = {k: v for k, v in _defaults(kind, name).items() if k not in skip}
        rows.append({kind[:-1]: name, "parameters (defaults)": ", ".join(f"{k}={v!r}" for k, v in params.items())})
    return pd.DataFrame(rows)
