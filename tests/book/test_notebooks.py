"""The committed notebooks follow the convention that nbval, papermill and the book rely on.

Static checks on the stored .ipynb files (no kernel): one ``parameters`` cell with the common
parameters and quick defaults, executed outputs without errors, at least one
``nbval-check-output`` cell whose stored text holds no raw floats, memory addresses or kernel temp
paths (they differ between CPUs and runs), no SVG (random ids), kernelspec ``python3``.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
RAW_FLOAT = re.compile(r"\d\.\d{4,}")
UNSTABLE = (re.compile(r"0x[0-9a-fA-F]{6,}"), re.compile(r"/tmp/ipykernel_\d+"))


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _text(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type in ("display_data", "execute_result"):
        return str(output.data.get("text/plain", ""))
    return ""


def test_there_are_table_notebooks() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"table1", "table2", "table3", "table4", "table5", "table6", "fig1", "fig2", "fig3", "fig4",
            "fig5"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS + BOOK_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_kernelspec_executed_no_errors_no_svg(path: Path) -> None:
    nb = _read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"{path.name} cell {i} was not executed: commit it executed"
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name} cell {i} stores an error"
            assert "image/svg+xml" not in out.get("data", {}), f"{path.name} cell {i} stores SVG"
            assert "Traceback (most recent call last)" not in _text(out)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_has_common_parameters_with_quick_defaults(path: Path) -> None:
    nb = _read(path)
    cells = [c for c in nb.cells if "parameters" in _tags(c)]
    assert len(cells) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
    values = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign), f"{path.name}: the parameters cell holds only assignments"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values["profile"] == "quick"
    assert values["dataset"] is None
    assert "attacks" in values and values["attacks"] is None
    assert values["seed"] == 0
    assert values["device"] == "auto"
    assert not any("injected-parameters" in _tags(c) for c in nb.cells), "commit the quick run, not a -p run"


@pytest.mark.parametrize("path", NOTEBOOKS + BOOK_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_papermill_reads_every_parameter(path: Path) -> None:
    """papermill skips a line with a second '=' (in a comment too) and then calls ``-p dataset ...``
    an unknown parameter: every name the cell assigns must be one papermill can override."""
    from papermill.translators import PythonTranslator

    cells = [c for c in _read(path).cells if "parameters" in _tags(c)]
    if not cells:
        pytest.skip("no parameters cell")
    assigned = {t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    parsed = {p.name for p in PythonTranslator.inspect(cells[0])}
    assert assigned <= parsed, f"{path.name}: papermill cannot parse {sorted(assigned - parsed)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_outputs_are_coarse_and_stable(path: Path) -> None:
    nb = _read(path)
    checked = [c for c in nb.cells if "nbval-check-output" in _tags(c)]
    assert checked, f"{path.name}: no cell tagged nbval-check-output"
    assert any(_text(o).strip() for c in checked for o in c.outputs), f"{path.name}: checked cells print nothing"
    for c in checked:
        for out in c.outputs:
            text = _text(out)
            assert not RAW_FLOAT.search(text), f"{path.name}: raw float in a checked output: {text!r}"
            for pat in UNSTABLE:
                assert not pat.search(text), f"{path.name}: unstable text in a checked output: {text!r}"
    first = checked[0]
    assert any(_text(o).startswith("profile=quick / dataset=") for o in first.outputs), \
        f"{path.name}: the first checked cell prints the provenance line"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figure_cells_store_their_png(path: Path) -> None:
    """A kernel started with MPLBACKEND=Agg silently stores no figure; every plt.show() cell must hold a PNG."""
    for i, cell in enumerate(_read(path).cells):
        if cell.cell_type == "code" and "plt.show()" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), f"{path.name} cell {i}: no stored figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figure_cells_end_with_plt_show(path: Path) -> None:
    """nbval ignores a trailing ';' (upstream bug), so a figure cell must end in plt.show()."""
    for cell in _read(path).cells:
        if cell.cell_type == "code" and any("image/png" in o.get("data", {}) for o in cell.outputs):
            last = cell.source.rstrip().splitlines()[-1].strip()
            assert not last.endswith(";"), f"{path.name}: figure cell ends with ';'"


def test_toc_lists_every_notebook_and_every_entry_exists() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    for f in files:
        assert any((ROOT / f).with_suffix(s).is_file() for s in (".md", ".ipynb")), f"_toc.yml: {f} is missing"
    for p in NOTEBOOKS + BOOK_NOTEBOOKS:
        assert str(p.relative_to(ROOT).with_suffix("")) in files, f"{p.name} is not in _toc.yml"
    for p in sorted((ROOT / "book").glob("*.md")):
        assert str(p.relative_to(ROOT).with_suffix("")) in files, f"{p.name} is not in _toc.yml"
