"""The package's shape: small files, short functions, imports that only go down.

Run as a script (``python tests/test_structure.py``) to list every violation at once.

* no file in ``stgraph/`` over :data:`MAX_FILE_LINES` lines;
* no function over :data:`MAX_FUNCTION_LINES` lines, outside the models' forward passes;
* no import circle between the package's modules, and ``stgraph.cli`` imported by nothing in the package
  (the CLI is a layer over the library, never under it);
* no upward arrow: a module imports only from its own layer of :data:`LAYERS` or the layers below.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "stgraph"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80

#: the package's layers, bottom first, by top-level module or subpackage: files, errors and the process
#: settings; reading files; graphs, metrics and configs; data sets and windows; layers; models; training;
#: what uses a trained run (forecasts, plots, online updates, federations, the bench, the Python API); the
#: command line and the demo on top
LAYERS = [
    {"errors", "files", "runtime", "limits", "cells", "typecheck", "yamlfile", "logs", "shared_data", "distributions",
     "mixture", "budgets"},
    {"io"},
    {"graph", "metrics", "config", "arguments"},
    {"datasets", "synth", "data", "regimes", "calibration"},
    {"nn"},
    {"models"},
    {"training"},
    {"forecast", "plot", "online", "federated", "bench", "api", "explain", "serve", "report"},
    {"demo", "cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def long_files() -> list[str]:
    return [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]


def long_functions() -> list[str]:
    found = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and not (node.name == "forward" and "/models/" in str(path)):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {n} lines")
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".")
        if path.name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # each imported name: a submodule, or a name of the module (the walk up in import_graph finds which)
    return [f"{prefix}.{a.name}" for a in node.names]


def import_graph() -> nx.DiGraph:
    """Module -> module it imports at load time or in a function (both are arrows of design)."""
    mods = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(name, path, node)
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                # a package's own __init__ re-exporting its modules is not an arrow back up
                # a package's own __init__ re-exporting its modules is not an arrow back up; a module importing
                # a name from its package's __init__ is one (the __init__ may import it in turn)
                if t and t != name and not (path.name == "__init__.py" and t.startswith(name + ".")):
                    g.add_edge(name, t)
    return g


def import_circles() -> list[str]:
    g = import_graph()
    return [" <-> ".join(sorted(c)) for c in nx.strongly_connected_components(g) if len(c) > 1]


def cli_importers() -> list[str]:
    g = import_graph()
    return sorted(m for m, t in g.edges if (t == "stgraph.cli" or t.startswith("stgraph.cli."))
                  and not (m == "stgraph.cli" or m.startswith("stgraph.cli.") or m == "stgraph.__main__"))


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else ""
    return next((i for i, names in enumerate(LAYERS) if top in names), None) if top else len(LAYERS)


def upward_arrows() -> list[str]:
    """Imports of a higher layer (and modules in no layer: place a new top-level module in :data:`LAYERS`)."""
    g = import_graph()
    out = [f"{m}: in no layer of LAYERS" for m in g if _layer(m) is None]
    for a, b in g.edges:
        la, lb = _layer(a), _layer(b)
        if la is not None and lb is not None and lb > la and a != "stgraph":
            out.append(f"{a} (layer {la}) imports {b} (layer {lb})")
    return sorted(out)


def test_no_long_files():
    assert long_files() == []


def test_no_long_functions():
    assert long_functions() == []


def test_no_import_circles():
    assert import_circles() == []


def test_no_upward_arrow():
    assert upward_arrows() == []


def test_cli_is_imported_by_nothing_in_the_package():
    assert cli_importers() == []


def clashing_test_files(root: Path = PACKAGE.parent / "tests") -> list[str]:
    """Test files sharing a basename in different folders: the test folders are not packages, so pytest
    (import mode prepend) refuses to collect the second one."""
    seen: dict[str, list[str]] = {}
    for path in sorted(root.rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(root)))
    return [" ~ ".join(paths) for paths in seen.values() if len(paths) > 1]


def test_no_two_test_files_share_a_name():
    assert clashing_test_files() == []


def test_the_checker_sees_a_circle_and_a_long_function(tmp_path, monkeypatch):
    pkg = tmp_path / "stgraph"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\nfrom stgraph.cli import main\n")
    (pkg / "b.py").write_text("from . import a\nx = 1\ndef f():\n" + "    y = 1\n" * 90)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert import_circles() == ["stgraph.a <-> stgraph.b"]
    assert cli_importers() == ["stgraph.a"]
    assert [s.split(":")[0] for s in long_functions()] == ["stgraph/b.py"]
    monkeypatch.setattr(sys.modules[__name__], "LAYERS", [{"b"}, {"a"}, {"cli"}])
    assert upward_arrows() == ["stgraph.a (layer 1) imports stgraph.cli (layer 2)",
                               "stgraph.b (layer 0) imports stgraph.a (layer 1)"]


if __name__ == "__main__":
    for title, items in (("files over %d lines" % MAX_FILE_LINES, long_files()),
                         ("functions over %d lines" % MAX_FUNCTION_LINES, long_functions()),
                         ("import circles", import_circles()), ("modules importing stgraph.cli", cli_importers()),
                         ("upward arrows", upward_arrows()), ("test files sharing a name", clashing_test_files())):
        print(f"# {title}: {len(items)}")
        for s in items:
            print("  " + s)
