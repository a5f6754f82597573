"""The library reference (book/reference.md) covers the whole public package, the book builds it
with autodoc + napoleon, and the tidy CSVs behind the elimination-defaults page keep their shape.

Static checks (no import of torch, no Sphinx run): a new module that nobody lists on the reference
page fails here instead of silently missing from the book.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "book" / "reference.md"
#: modules that are not library API: the glue shared by the papermill notebooks (a module today,
#: possibly a subpackage later; everything under the name is left out)
NOT_LIBRARY = ("beniful.notebook",)


def public_modules(package: Path = ROOT / "beniful") -> set[str]:
    """Dotted names of every module and package under ``package`` whose path has no ``_``-prefixed
    part (``__init__.py`` names its package)."""
    out = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts) or "__pycache__" in rel.parts:
            continue
        name = ".".join(parts)
        if not any(name == m or name.startswith(m + ".") for m in NOT_LIBRARY):
            out.add(name)
    return out


def documented_modules(text: str) -> list[str]:
    return re.findall(r"^\.\. automodule::\s+(\S+)\s*$", text, flags=re.M)


def test_public_modules_finds_subpackages_and_skips_private_and_glue(tmp_path: Path) -> None:
    pkg = tmp_path / "beniful"
    for rel in ("__init__.py", "zoo.py", "_private.py", "attacks/__init__.py", "attacks/badnets.py",
                "notebook.py", "notebook/__init__.py", "notebook/tables.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text("")
    assert public_modules(pkg) == {"beniful", "beniful.zoo", "beniful.attacks", "beniful.attacks.badnets"}


def test_reference_page_names_every_public_module_once() -> None:
    named = documented_modules(REFERENCE.read_text())
    assert len(named) == len(set(named)), f"listed twice: {sorted({m for m in named if named.count(m) > 1})}"
    public = public_modules()
    missing = sorted(public - set(named))
    assert not missing, f"book/reference.md does not document {missing}: add an automodule block for each"
    stale = sorted(set(named) - public)
    assert not stale, f"book/reference.md documents modules that are not public package modules: {stale}"


def test_reference_page_leaves_out_the_notebook_glue() -> None:
    named = documented_modules(REFERENCE.read_text())
    assert not [m for m in named if m.startswith(NOT_LIBRARY)]


def test_book_builds_the_reference_with_autodoc_and_napoleon() -> None:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx = cfg["sphinx"]
    assert {"sphinx.ext.autodoc", "sphinx.ext.napoleon"} <= set(sphinx["extra_extensions"])
    # -n must not fail on types that no offline inventory resolves
    patterns = [p for _, p in sphinx["config"]["nitpick_ignore_regex"]]
    for name in ("torch.Tensor", "torch.nn.modules.module.Module", "numpy.ndarray", "pandas.DataFrame",
                 "pathlib.Path"):
        assert any(re.fullmatch(p, name) for p in patterns), name
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/reference" in toc


ELIMINATION_COLUMNS = ["profile", "dataset", "device", "seed", "setting", "attack", "acc_drop", "asr"]


@pytest.mark.parametrize("name", ["schedule", "transplant", "labels"])
def test_elimination_defaults_csvs_are_tidy(name: str) -> None:
    df = pd.read_csv(ROOT / "results" / "quick" / "mnist5k" / f"elimination_defaults_{name}.csv")
    assert list(df.columns[: len(ELIMINATION_COLUMNS)]) == ELIMINATION_COLUMNS
    assert set(df.profile) == {"quick"} and set(df.dataset) == {"mnist5k"} and set(df.device) == {"cpu"}
    assert set(df.attack) <= {"badnets", "blended", "sig", "wanet", "iad"}
    assert not df.duplicated(["seed", "setting", "attack"]).any(), "one row per measurement"
    assert df.asr.between(0, 1).all() and df.acc_drop.dropna().between(-1, 1).all()
    assert df.chosen.any(), "the chosen setting is marked"


# the private design notes of the team are not part of the repository, so nothing in it may send a
# reader there; the names are assembled here so that this file does not match its own search
DESIGN_NOTES = re.compile(r"\b(?:" + "|".join(("METHOD", "API", "STACK")) + r")\.md\b")

def test_no_tracked_file_points_to_the_private_design_notes() -> None:
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    hits = set()
    for rel in files:
        path = ROOT / rel
        if not path.is_file() or path.suffix in (".png", ".jpg", ".npz", ".gz", ".safetensors"):
            continue
        if DESIGN_NOTES.search(path.read_text(errors="ignore")):
            hits.add(rel)
    assert not sorted(hits), "name the book page that holds the content instead"
