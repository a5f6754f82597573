"""Fixtures of the notebook-glue tests: results and data roots in a temporary folder, never the
checkout's, and a helper that plants a result CSV there."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENIFUL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("BENIFUL_DATA", str(tmp_path / "data"))


@pytest.fixture
def plant(tmp_path: Path) -> Callable[[str, str, str, pd.DataFrame], None]:
    """``plant(profile, dataset, name, df)`` writes ``df`` as ``results/<profile>/<dataset>/<name>.csv``."""

    def _plant(profile: str, dataset: str, name: str, df: pd.DataFrame) -> None:
        d = tmp_path / "results" / profile / dataset
        d.mkdir(parents=True, exist_ok=True)
        df.to_csv(d / f"{name}.csv", index=False)

    return _plant
