"""The architecture, checked: arrows point one way and the folders say where things live.

- no import circle among gateway/ modules (imports anywhere in a file count, lazy ones too,
  except those under `if TYPE_CHECKING:`, which never run);
- adapters/ and keys/ never import gateway;
- nobody imports another package's underscore-private module;
- no module in gateway/ is over ~500 lines without saying why at its top.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "adapters", "keys")
LONG_MODULE_LINES = 520


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> set[str]:
    """The project modules `module` imports (a `from pkg import name` names pkg.name when
    that is a module, else pkg)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.split(".")[0] in PACKAGES and name in MODULES}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def test_no_import_circle_among_gateway_modules():
    gateway_graph = {m: {d for d in deps if d.startswith("gateway")}
                     for m, deps in GRAPH.items() if m.startswith("gateway")}
    assert _cycles(gateway_graph) == []


def test_the_circle_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_adapters_and_keys_never_import_gateway():
    offenders = {m: sorted(d for d in deps if d.startswith("gateway"))
                 for m, deps in GRAPH.items() if m.startswith(("adapters", "keys"))}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_no_import_of_another_packages_private_module():
    offenders = []
    for module, deps in GRAPH.items():
        for dep in deps:
            parent, _, leaf = dep.rpartition(".")
            if leaf.startswith("_") and not leaf.startswith("__") and \
                    not (module == parent or module.startswith(parent + ".")):
                offenders.append(f"{module} -> {dep}")
    assert offenders == []


def test_long_modules_say_why_at_their_top():
    unexplained = []
    for name, path in MODULES.items():
        if not name.startswith("gateway"):
            continue
        text = path.read_text()
        if text.count("\n") > LONG_MODULE_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "long because" not in docstring.lower():
                unexplained.append(f"{name} ({text.count(chr(10))} lines)")
    assert unexplained == []
