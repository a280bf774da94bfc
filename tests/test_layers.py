"""The package's layers run one way (docs/DESIGN.md, "Layers"): a module imports only from its own
layer or below, whether the import sits at the top of the file, inside a function or under
``TYPE_CHECKING``. A shared piece that a lower layer needs moves down; it is not imported late.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top; a module belongs to its longest matching prefix.
LAYERS = [
    ("xmodal.errors", "xmodal.registry", "xmodal.paths", "xmodal.logs", "xmodal.progress", "xmodal.device",
     "xmodal.file_hashes"),
    ("xmodal.models.base", "xmodal.data"),
    ("xmodal.encoders", "xmodal.nn", "xmodal.losses"),
    ("xmodal.models",),
    ("xmodal.features", "xmodal.config"),
    ("xmodal.eval", "xmodal.run", "xmodal.report_html"),
    ("xmodal.training",),
    ("xmodal.factory",),
    ("xmodal.api", "xmodal.trained", "xmodal.zero_shot"),
    ("xmodal.search",),
    ("xmodal.demo", "xmodal.sweep"),
    ("xmodal.cli", "xmodal.__main__", "xmodal"),
]


def layer_of(module: str) -> int:
    matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS (and to docs/DESIGN.md)"
    return max(matches)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path, text: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) of every ``xmodal`` import in a file (or ``text``)."""
    tree = ast.parse(text if text is not None else path.read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.split(".")[0] == "xmodal":
                    # ``from xmodal.search import milvus_index`` imports a module of the package
                    names = [f"{child.module}.{alias.name}" for alias in child.names]
                    found.extend((name if (SRC / (name.replace(".", "/") + ".py")).exists() else child.module,
                                  child.lineno, inside) for name in names)
            elif isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, inside) for alias in child.names
                             if alias.name.split(".")[0] == "xmodal")
            visit(child, inside)

    visit(tree, False)
    return found


FILES = sorted((SRC / "xmodal").rglob("*.py"))


def upward_imports(files: list[Path] = FILES, texts: dict[Path, str] | None = None) -> list[str]:
    found = []
    for path in files:
        module = module_name(path)
        for imported, line, _ in internal_imports(path, (texts or {}).get(path)):
            if layer_of(imported) > layer_of(module):
                found.append(f"{path.relative_to(SRC)}:{line}: {module} imports {imported}")
    return found


def test_no_import_runs_up_a_layer():
    assert upward_imports() == []


def test_the_check_finds_an_upward_import():
    """The check can fail: a data module importing the trainer is caught, wherever the import sits."""
    probe = SRC / "xmodal" / "data" / "_layer_probe.py"  # never written: its text is given
    text = "def f():\n    from xmodal.training.trainer import train_run\n"
    assert upward_imports([*FILES, probe], {probe: text}) == [
        "xmodal/data/_layer_probe.py:2: xmodal.data._layer_probe imports xmodal.training.trainer"]


@pytest.mark.parametrize("module", ["xmodal.data.records", "xmodal.eval.two_stage", "xmodal.search.engine"])
def test_every_module_has_a_layer(module):
    assert 0 <= layer_of(module) < len(LAYERS)
