"""
The tree's layers, as the README's Layout section states them: what may import what, packages
that are packages, modules a reader can hold in their head. Read from the source (ast), so an
import hidden inside a function counts too.
"""

import ast

import pytest
from conftest import ROOT

SOURCES = sorted(p for top in ("core", "data", "dashboard") for p in (ROOT / top).rglob("*.py"))
# the layers of core that know nothing of data/ (a batch function or tensors cross that boundary);
# core.runs.spec and core.cli are where core meets data/
DATA_FREE = ("core/micrograd", "core/models", "core/training", "core/capture")


def imported(path):
    """Top-level package names a module imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def rel(path):
    return path.relative_to(ROOT).as_posix()


def test_the_tree_has_the_layers_the_readme_names():
    for d in ("core/micrograd", "core/models", "core/training", "core/capture", "core/runs",
              "dashboard/views", "dashboard/ui", "dashboard/plot"):
        assert (ROOT / d / "__init__.py").exists(), d


@pytest.mark.parametrize("path", [p for p in SOURCES if rel(p).startswith("core/")], ids=rel)
def test_core_never_imports_streamlit_or_the_dashboard(path):
    assert not imported(path) & {"streamlit", "dashboard"}


@pytest.mark.parametrize("path", [p for p in SOURCES if rel(p).startswith(DATA_FREE)], ids=rel)
def test_models_training_and_capture_never_import_data(path):
    assert "data" not in imported(path)


@pytest.mark.parametrize("path", [p for p in SOURCES if rel(p).startswith("data/")], ids=rel)
def test_data_never_imports_core_or_the_dashboard(path):
    assert not imported(path) & {"core", "dashboard", "streamlit"}


def test_every_folder_of_python_is_a_package_and_no_module_is_over_700_lines():
    for p in SOURCES:
        assert (p.parent / "__init__.py").exists(), rel(p)
        assert len(p.read_text().splitlines()) <= 700, rel(p)


def test_only_the_apps_entry_file_edits_sys_path():
    edits = [rel(p) for p in SOURCES if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]
    assert edits == ["dashboard/app.py"]
