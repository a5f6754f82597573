"""beniful.sources: the digest of the package modules an artefact depends on, through its imports.

The import rules are checked on a small package written to a temporary folder (``PACKAGE_ROOT``
pointed at it); real edits are real changes of file bytes in a copy, never a mocked digest.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from beniful import sources, training
from beniful.attacks.badnets import BadNets
from beniful.detectors.beniful import BeniFulDetector
from beniful.eliminators.beniful import BeniFulEliminator

# a toy "beniful" package: file -> source
TOY = {
    "__init__.py": "from . import a, b, c, d, e, sub\n",
    "a.py": "import os\nimport torch\nfrom . import b\n",        # a -> b -> c: c only indirectly
    "b.py": "from .c import thing\n",
    "c.py": "thing = 1\n",
    "d.py": "from . import sub\n",                                 # a package: its __init__ and what it imports
    "e.py": "from .sub.y import Y\n\ndef late():\n    import beniful.c\n",  # a submodule alone; a late import
    "sub/__init__.py": "from . import x\n",
    "sub/x.py": "from .. import c\n",
    "sub/y.py": "Y = 2\n",
}


def write_toy(base: Path, edits: dict[str, str] | None = None) -> Path:
    root = base / "beniful"
    for name, text in {**TOY, **(edits or {})}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    root = write_toy(tmp_path / "one")
    monkeypatch.setattr(sources, "PACKAGE_ROOT", root)
    return root


def test_imports_are_followed_transitively(toy):
    assert sources.source_modules("beniful.a") == ("beniful.a", "beniful.b", "beniful.c")
    assert sources.source_modules("beniful.c") == ("beniful.c",)


def test_a_package_import_counts_its_init_and_what_it_imports(toy):
    assert sources.source_modules("beniful.d") == ("beniful.c", "beniful.d", "beniful.sub", "beniful.sub.x")


def test_a_submodule_import_counts_that_module_not_its_package(toy):
    # ``from .sub.y import Y`` counts beniful.sub.y only; the import inside a function counts too
    assert sources.source_modules("beniful.e") == ("beniful.c", "beniful.e", "beniful.sub.y")


def test_an_edit_of_an_indirect_import_changes_the_digest(toy, tmp_path, monkeypatch):
    before = {m: sources.source_digest(m) for m in ("beniful.a", "beniful.d", "beniful.sub.y")}
    monkeypatch.setattr(sources, "PACKAGE_ROOT", write_toy(tmp_path / "two", {"c.py": "thing = 2\n"}))
    after = {m: sources.source_digest(m) for m in before}
    assert after["beniful.a"] != before["beniful.a"]            # a imports b, which imports c
    assert after["beniful.d"] != before["beniful.d"]            # d -> sub -> sub.x -> c
    assert after["beniful.sub.y"] == before["beniful.sub.y"]    # does not import c


def test_the_digest_is_of_content_and_order_free(toy, tmp_path, monkeypatch):
    d = sources.source_digest("beniful.a", "beniful.e")
    assert d == sources.source_digest("beniful.e", "beniful.a", "beniful.b")  # b is in a's closure anyway
    assert len(d) == 64 and int(d, 16) >= 0
    monkeypatch.setattr(sources, "PACKAGE_ROOT", write_toy(tmp_path / "elsewhere"))
    assert sources.source_digest("beniful.a", "beniful.e") == d  # same bytes elsewhere: same digest


def test_objects_name_their_modules():
    mods = sources.source_modules(BeniFulEliminator)
    # the eliminator reaches the detector, the VAE and the feature hooks through its imports ...
    for m in ("beniful.eliminators.beniful", "beniful.eliminators.base", "beniful.detectors.beniful",
              "beniful.vae", "beniful.features", "beniful.training", "beniful.attacks.base"):
        assert m in mods
    # ... but not the attacks, other detectors or the package's __init__ (which imports everything)
    for m in ("beniful", "beniful.attacks", "beniful.attacks.iad", "beniful.detectors.strip", "beniful.zoo"):
        assert m not in mods
    assert sources.source_modules(BadNets) == tuple(sorted(sources.source_modules(BadNets)))
    assert "beniful.attacks.blended" not in sources.source_modules(BadNets)
    assert sources.source_modules(training) == sources.source_modules(training.train_classifier)
    assert sources.source_modules(training) == sources.source_modules("beniful.training")


def test_a_subclass_outside_the_package_counts_its_package_bases():
    class Mine(BeniFulDetector):
        pass

    assert sources.source_modules(Mine) == sources.source_modules(BeniFulDetector)


@pytest.mark.parametrize("bad", [int, len, "torch.nn", "beniful.nonexistent", 3, None])
def test_objects_outside_the_package_are_rejected(bad):
    with pytest.raises((TypeError, ValueError), match="beniful"):
        sources.source_digest(bad)


def test_an_edit_of_the_real_vae_reaches_the_eliminator_digest(tmp_path, monkeypatch):
    copy = tmp_path / "beniful"
    shutil.copytree(sources.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    same, badnets = sources.source_digest(BeniFulEliminator), sources.source_digest(BadNets)
    monkeypatch.setattr(sources, "PACKAGE_ROOT", copy)
    assert sources.source_digest(BeniFulEliminator) == same  # a faithful copy
    with (copy / "vae.py").open("a") as f:
        f.write("\n# an edit\n")
    sources.clear_cache()  # the copy was edited in this process
    assert sources.source_digest(BeniFulEliminator) != same
    assert sources.source_digest(BadNets) == badnets  # BadNets does not import the VAE
