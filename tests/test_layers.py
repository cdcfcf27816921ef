"""The import graph of fastnmf's modules: the layers of DESIGN.md, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastnmf"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module under ``root`` → the fastnmf modules it imports, at any depth
    (a function-level import counts: it is still a cycle, only deferred)."""
    modules = {_module_name(p): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from . import kernels`` imports the module fastnmf.kernels, not
                # (as far as the layers go) the package's __init__
                submodules = [f"{target}.{a.name}" for a in node.names]
                candidates = ([m for m in submodules if m in modules]
                              or [target])
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in candidates if c in modules and c != name}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself, with one path back to it."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in sorted(graph.get(node, ())):
                if dep == start:
                    found.append([*path, start])
                    stack = []
                    break
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    return found


def test_graph_and_cycle_finder_work():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c[0] for c in cycles(graph)] == ["a", "b", "c"]
    g = import_graph()
    assert "fastnmf.kernels._math" in g["fastnmf.kernels.kl"]
    assert "fastnmf.kernels.beta" in g["fastnmf.kernels.kl"]


def test_kernels_have_no_import_cycle_and_import_down_only():
    graph = import_graph(PACKAGE / "kernels")
    assert cycles(graph) == []
    for name, deps in import_graph().items():
        if name.startswith("fastnmf.kernels"):
            outside = {d for d in deps if not d.startswith("fastnmf.kernels")}
            assert outside <= {"fastnmf._jit"}, (name, outside)


# The data layer: the only modules that know how X is stored (DESIGN.md).
DATA_LAYER = {"fastnmf._data", "fastnmf._kl_products", "fastnmf._beta_products",
              "fastnmf._masked", "fastnmf.dask.data"}
PRIVATE_DATA = {"_arrays", "_bounds"}


def private_data_reads(root: Path = PACKAGE) -> dict[str, list[int]]:
    """Modules outside :data:`DATA_LAYER` → lines that read ``<obj>._arrays``/``._bounds``
    of an object other than ``self``."""
    found = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        if name in DATA_LAYER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in PRIVATE_DATA
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
                found.setdefault(name, []).append(node.lineno)
    return found


def test_only_the_data_layer_reads_a_data_objects_arrays(tmp_path):
    assert private_data_reads() == {}
    # the check finds such a read
    (tmp_path / "solver.py").write_text("def f(data):\n    return data._arrays[0]\n")
    assert private_data_reads(tmp_path) == {f"{tmp_path.name}.solver": [2]}
