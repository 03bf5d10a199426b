"""The tree keeps its architecture: layers depend one way, no import circles, small files.

The layers and their rules are import-linter contracts in ``pyproject.toml``
(``[tool.importlinter]``); docs/architecture.md draws them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pose_tuner"
#: a source file longer than this says why at its top, in a line starting "# size:"
MAX_LINES = 500


def test_import_contracts_are_kept():
    """Every contract of pyproject.toml (layers, no TVM in hardware, the database only
    where it belongs) holds."""
    pytest.importorskip("importlinter")
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                          "lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and " kept, 0 broken" in out.stdout


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_through_others():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("pose_tuner")
    modules = [m for m in graph.modules if m.startswith("pose_tuner")]
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m)
                 if d.startswith("pose_tuner")} for m in modules}
    assert _strongly_connected(edges) == []
    # the check can fail: a circle is found where there is one
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]


def test_no_source_file_is_long_without_a_reason():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any(ln.startswith("# size:") for ln in lines[:40]):
            long.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert long == [], "split these or say why at their top (# size: ...)"


def test_only_hardware_names_targets():
    """The search loop, the compile pipeline and the baselines ask a target what it
    supports; none of them tests which target it is."""
    import re

    names = re.compile(r"""(target|kind\.name)[^=\n]*[!=]=\s*["'](cuda|llvm|rasp4b|x86[\w-]*)["']""")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("hardware/"):
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if names.search(line):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert found == []


@pytest.mark.parametrize("package", sorted(p.name for p in PACKAGE.iterdir()
                                           if (p / "__init__.py").is_file()))
def test_every_layer_says_what_it_is(package):
    import ast

    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and len(doc) > 40, f"pose_tuner/{package}/__init__.py needs a docstring"
    assert os.path.isfile(ROOT / "docs" / "architecture.md")
