"""Importing the package changes nothing global and prints nothing: no warnings (their text would
land in every notebook's stored output), no warning filters installed."""
from __future__ import annotations

import subprocess
import sys


def test_import_emits_no_warning_and_installs_no_filter() -> None:
    code = ("import warnings; before = list(warnings.filters); import beniful, beniful.notebook; "
            "assert warnings.filters == before, 'import changed the warning filters'")
    run = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == ""
