"""No import cycle among gradviz's modules, function-local imports included, and the layering
that keeps it so: checkpoint files are read in one place (gradviz.checkpoints), squares only
generates, data -> squares and generative -> data run one way."""

from __future__ import annotations

import ast
from pathlib import Path

GRADVIZ = Path(__file__).resolve().parent.parent / "gradviz"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file of every ``.py`` under the package folder ``root``."""
    mods = {}
    for p in sorted(root.rglob("*.py")):
        parts = p.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (top level, inside a
    function, under ``if TYPE_CHECKING``): every ``import`` statement counts. An import of a
    package's own parent package (``gradviz``, ``gradviz.ui`` from inside gradviz/ui) is not
    an edge; ``from a import b`` is an edge to ``a.b`` when that is a module, else to ``a``."""
    pkg = root.name
    mods = module_names(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        is_pkg = p.name == "__init__.py"
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = m.split(".") if is_pkg else m.split(".")[:-1]
                    anchor = here[: len(here) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m and t != pkg and t.startswith(pkg) and not m.startswith(t + "."):
                    edges[m].add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_gradviz_modules():
    edges = import_graph(GRADVIZ)
    assert len(edges) > 10
    found = cycles(edges)
    assert not found, "import cycles: " + " | ".join(" <-> ".join(c) for c in found)


def test_the_check_sees_a_cycle_through_a_function_local_or_relative_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("from . import a\n")
    (pkg / "d.py").write_text("from pkg.sub import e\n")
    (pkg / "sub" / "e.py").write_text("from ..d import x\n")
    (pkg / "lone.py").write_text("import pkg.a\n")
    edges = import_graph(pkg)
    assert edges["pkg.b"] == {"pkg.c"} and edges["pkg.c"] == {"pkg.a"} and edges["pkg.sub.e"] == {"pkg.d"}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.sub.e"]]


def test_the_low_layers_import_no_higher_gradviz_module():
    edges = import_graph(GRADVIZ)
    assert edges["gradviz.squares"] == set()  # generation only: data wraps it, generative holds its residuals
    assert edges["gradviz.checkpoints"] <= {"gradviz.utils"}
    assert edges["gradviz.data"] <= {"gradviz.squares", "gradviz.utils"}
    assert "gradviz.zoo" not in edges["gradviz.generative"]  # checkpoints, cards: gradviz.checkpoints


def _torch_load_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "load" and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"]


def test_torch_load_is_called_in_one_place_with_weights_only():
    calls = {p.relative_to(GRADVIZ.parent).as_posix(): _torch_load_calls(p) for p in GRADVIZ.rglob("*.py")}
    assert {p for p, c in calls.items() if c} == {"gradviz/checkpoints.py"}
    (call,) = calls["gradviz/checkpoints.py"]
    assert any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def test_the_public_names_stay_where_they_were():
    from gradviz import checkpoints, data, generative, squares, zoo

    assert zoo.ModelCard is checkpoints.ModelCard and zoo.CheckpointError is checkpoints.CheckpointError
    assert zoo.read_checkpoint is checkpoints.read_checkpoint
    assert zoo.CHECKPOINT_FORMAT == checkpoints.CHECKPOINT_FORMAT
    assert callable(generative.load_generator) and callable(data.load_dataset) and callable(zoo.load_model)
    assert not hasattr(squares, "load_squares") and callable(data.load_squares)
