"""beniful.notebook.params: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from beniful import attacks, datasets, detectors, eliminators, models, profiles  # noqa: E402
from beniful import notebook as nb  # noqa: E402


def test_parameter_table_reads_the_code() -> None:
    for kind, reg in (("attacks", attacks), ("detectors", detectors), ("eliminators", eliminators)):
        tab = nb.parameter_table(kind)
        assert list(tab.iloc[:, 0]) == reg.available()
    tab = nb.parameter_table("attacks").set_index("attack")
    assert "patch_size=3" in tab.loc["badnets", "parameters (defaults)"]
    assert "seed=" not in tab.loc["badnets", "parameters (defaults)"]
    assert nb.default_of("attacks", "blended", "alpha") == attacks.ATTACKS.get("blended")().alpha
    assert nb.default_of("attacks", "not_there", "alpha") == "–"
