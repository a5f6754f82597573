"""nbval --nbval-lax really compares the cells tagged nbval-check-output (issue 5: altering a stored
checked output must make `make test` fail), and ignores untagged ones.

A two-cell notebook with no imports is run through pytest's nbval plugin in a subprocess.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbval")


def _notebook(path: Path, checked_text: str, free_text: str) -> None:
    nb = nbformat.v4.new_notebook()
    checked = nbformat.v4.new_code_cell("print('rows: 6')", execution_count=1,
                                        metadata={"tags": ["nbval-check-output"]})
    checked.outputs = [nbformat.v4.new_output("stream", name="stdout", text=checked_text)]
    free = nbformat.v4.new_code_cell("print(3.14159265)", execution_count=2)
    free.outputs = [nbformat.v4.new_output("stream", name="stdout", text=free_text)]
    nb.cells = [checked, free]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           str(path)], cwd=path.parent, capture_output=True, text=True, timeout=240)


def test_altered_checked_output_fails_and_unchecked_is_ignored(tmp_path: Path) -> None:
    good = tmp_path / "good.ipynb"
    _notebook(good, "rows: 6\n", "2.0 (differs from the run: not compared)\n")
    res = _nbval(good)
    assert res.returncode == 0, res.stdout + res.stderr
    bad = tmp_path / "bad.ipynb"
    _notebook(bad, "rows: 7\n", "3.14159265\n")
    res = _nbval(bad)
    assert res.returncode != 0
    assert "rows: 7" in res.stdout or "rows: 6" in res.stdout
