"""Importing the package changes nothing global and prints nothing: no warnings (their text would
land in every notebook's stored output), no warning filters installed."""
from __future__ import annotations

import subprocess
import sys


def test_import_emits_no_warning_and_installs_no_filter() -> None:
    # the dependencies install filters of their own when imported: import them first
    code = ("import warnings, torch, torchvision, numpy, pandas, sklearn.metrics, safetensors.torch, tqdm, matplotlib; "
            "before = list(warnings.filters); import beniful, beniful.notebook; "
            "new = [f for f in warnings.filters if f not in before]; "
            "assert not new, f'import added warning filters: {new}'")
    run = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == ""
