"""The package's shape, checked: the subpackages are layers (each imports only from its own and those below
it, in the order docs/architecture.md writes), no import cycle between packages or modules (counting imports
inside functions), and every import left inside a function says why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import runbook_lib

PACKAGE = Path(runbook_lib.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()

# bottom first; a top-level module (errors.py) is a layer of its own, as a subpackage is
LAYERS = [
    "errors",
    "names",
    "tomltext",
    "display",
    "layouts",
    "config",
    "db",
    "sql",
    "batch",
    "orm",
    "report",
    "execution",
    "notebook",
    "phases",
    "fleet",
    "commands",
    "cli",
]
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def _layer(module: str) -> str:
    """runbook_lib.batch.model -> batch; runbook_lib.config -> config; runbook_lib -> "" (the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[ast.AST, str, bool]]:
    """(node, imported runbook_lib module, inside a function) for every import of the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[ast.AST, str, bool]] = []

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((child, a.name, inside) for a in child.names if a.name.startswith("runbook_lib"))
            elif (
                isinstance(child, ast.ImportFrom) and (child.module or "").startswith("runbook_lib") and not child.level
            ):
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    found.append((child, sub if sub in MODULES else child.module, inside))
            visit(child, nested)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    return {
        name: {target for _, target, _ in _imports(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_no_import_cycle_between_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (counting imports inside functions): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module from a layer above its own (or from a package in no layer)."""
    found = []
    for module, targets in graph.items():
        for target in targets:
            here, there = _layer(module), _layer(target)
            if here == there or not there:
                continue
            if here not in LAYERS or there not in LAYERS:
                found.append(f"{module} -> {target} (a package in no layer: add it to LAYERS and the docs)")
            elif LAYERS.index(there) > LAYERS.index(here):
                found.append(f"{module} -> {target} ({there} is above {here})")
    return sorted(found)


def test_each_package_imports_only_the_layers_below_it() -> None:
    upward = _upward(_graph())
    assert not upward, "imports pointing up the layers of docs/architecture.md: " + "; ".join(upward)


def test_no_import_cycle_between_packages() -> None:
    packages = {_layer(m) for m in MODULES} - {""}
    graph = {p: set() for p in packages}
    for module, targets in _graph().items():
        for target in targets:
            if _layer(module) and _layer(target) and _layer(module) != _layer(target):
                graph[_layer(module)].add(_layer(target))
    cycles = _cycles(graph)
    assert not cycles, "import cycles between packages: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {"runbook_lib.db.catalog": {"runbook_lib.sql.parse"}, "runbook_lib.sql.parse": {"runbook_lib.errors"}}
    assert _upward(graph) == ["runbook_lib.db.catalog -> runbook_lib.sql.parse (sql is above db)"]
    assert _upward({"runbook_lib.db.x": {"runbook_lib.newpkg.y"}})[0].endswith(
        "(a package in no layer: add it to LAYERS and the docs)"
    )


def test_the_architecture_document_states_the_same_layers() -> None:
    text = " ".join(ARCHITECTURE.read_text(encoding="utf-8").split())
    stated = re.search(r"in this order from the bottom: (.*?)\.", text)
    assert stated, "docs/architecture.md no longer says the layers' order ('in this order from the bottom: ...')"
    named = re.findall(r"[a-z_]+", stated.group(1).replace("then ", "").replace(" and ", " "))
    assert named == LAYERS
    every = {_layer(m) for m in MODULES} - {""}
    assert every <= set(LAYERS), f"packages in no layer: {sorted(every - set(LAYERS))}"


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _explained(lines: list[str], node: ast.stmt) -> bool:
    """A comment on the import's own lines, or right above the group of imports it belongs to."""
    if any("#" in line for line in lines[node.lineno - 1 : node.end_lineno]):
        return True
    number = node.lineno - 1  # 1-based number of the line above
    while number >= 1:
        text = lines[number - 1].strip()
        if text.startswith("#"):
            return True
        if not text or text.startswith(("import ", "from ")) or text.endswith((",", "(", ")")):
            number -= 1
            continue
        return False
    return False


def test_an_import_inside_a_function_says_why() -> None:
    unexplained = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not _explained(lines, node):
                    unexplained.append(f"{name} line {node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unexplained, "imports inside functions without a comment saying why: " + "; ".join(
        sorted(set(unexplained))
    )
