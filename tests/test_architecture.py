"""The layers of the README's Architecture, as the code imports them (function-level imports included):
each package imports only those below it, and no module takes part in an import circle."""
from __future__ import annotations

import ast
from collections import defaultdict

from tests.conftest import ROOT

# What each layer may import, besides itself (bottom to top).
MAY_IMPORT = {
    "pipeline": set(),
    "figures": {"pipeline"},
    "db": {"pipeline"},
    "auth": {"pipeline", "db"},
    "live": {"pipeline", "db", "auth", "config"},
    "api": {"pipeline", "figures", "db", "auth", "live"},
    "components": {"pipeline", "figures", "db", "auth", "live"},
    "pages": {"pipeline", "figures", "db", "auth", "live", "components"},
    "callbacks": {"pipeline", "figures", "db", "auth", "live", "components", "pages"},
    "app": {"pipeline", "figures", "db", "auth", "live", "api", "components", "pages", "callbacks", "config"},
    "config": set(),
}


def modules() -> dict[str, object]:
    found = {}
    for package in MAY_IMPORT:
        paths = [ROOT / f"{package}.py"] if (ROOT / f"{package}.py").exists() else (ROOT / package).rglob("*.py")
        for path in paths:
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    known, graph = modules(), defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {target for target in targets if target in known and target != name}
    return graph


def test_each_layer_imports_only_those_below_it():
    upward = sorted(f"{module} -> {target}" for module, targets in import_graph().items() for target in targets
                    if target.split(".")[0] != module.split(".")[0]
                    and target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]])
    assert upward == []


def test_no_import_circle():
    graph, circles = import_graph(), []

    def reaches(start: str, goal: str, seen: set) -> bool:
        for target in graph[start]:
            if target == goal or (target not in seen and (seen.add(target) or reaches(target, goal, seen))):
                return True
        return False

    for module in sorted(graph):
        if reaches(module, module, set()):
            circles.append(module)
    assert circles == []
