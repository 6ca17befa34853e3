"""The project's import graph, read from the source with `ast` (nothing is imported):
no import cycle between project modules, and no module reaching into another module's
private (`_name`) names, nor into torch's or torchvision's private ones from helpers/ or
autograder/. Imports inside functions count: they only move a cycle to run time.

A package's own underscore modules are package-internal and free to import inside that
package (STYLE: internals shared inside a package live in an underscore module)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("helpers", "autograder", "course")
THIRD_PARTY = ("torch", "torchvision")  # private reach-ins checked in helpers/, autograder/


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _imports(name: str, tree: ast.Module):
    """(node, dotted path, local name, alias) for every import in the module, relative ones
    made absolute. `from a.b import c` yields "a.b.c" (a submodule or a name in a.b)."""
    is_package = MODULES[name].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, alias.asname or alias.name.split(".")[0], alias
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                yield node, f"{base}.{alias.name}", alias.asname or alias.name, alias


def _bindings(name: str, tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted path it was imported as (`import a.b` binds `a` to "a")."""
    out = {}
    for node, path, local, alias in _imports(name, tree):
        if isinstance(node, ast.Import) and alias.asname is None:
            path = local
        out[local] = path
    return out


def _dotted(node: ast.Attribute, bindings: dict[str, str]) -> str | None:
    """`helpers.metrics._match` as "helpers.metrics._match", through import aliases."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in bindings:
        return ".".join([bindings[node.id], *reversed(parts)])
    return None


def _target(path: str) -> str | None:
    """The project module an imported dotted path lives in (longest known prefix)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def _reach_in(importer: str, path: str) -> str | None:
    """Why `path`, used in module `importer`, reaches into something private; else None."""
    parts = path.split(".")
    top_level = importer.split(".")[0]
    if parts[0] in THIRD_PARTY:
        if top_level in ("helpers", "autograder") and any(map(_private, parts)):
            return f"private {parts[0]} name {path}"
        return None
    if parts[0] not in PACKAGES:
        return None
    for i, part in enumerate(parts):
        if not _private(part):
            continue
        owner = ".".join(parts[:i])
        if ".".join(parts[: i + 1]) in MODULES:  # an underscore module: its package only
            if not importer.startswith(owner + "."):
                return f"underscore module {path} from outside package {owner}"
        elif importer != owner:
            return f"private name {path} of another module"
    return None


def _scan():
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    reach_ins = []
    for name, file in MODULES.items():
        tree = ast.parse(file.read_text(), filename=str(file))
        where = file.relative_to(ROOT)
        for node, path, _, _ in _imports(name, tree):
            target = _target(path)
            if target and target != name:
                graph[name].add(target)
            if why := _reach_in(name, path):
                reach_ins.append(f"{where}:{node.lineno}: {why}")
        bindings = _bindings(name, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                path = _dotted(node, bindings)
                owner = path and path.rsplit(".", 1)[0]
                if owner and (owner in MODULES or owner.split(".")[0] in THIRD_PARTY):
                    if why := _reach_in(name, path):
                        reach_ins.append(f"{where}:{node.lineno}: {why}")
    return graph, sorted(set(reach_ins))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: groups of modules that each reach all the others."""
    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reach = {name: reachable(name) for name in graph}
    groups = {tuple(sorted(m for m in reach[n] if n in reach[m])) for n in graph if n in reach[n]}
    return sorted(list(g) for g in groups)


def test_the_project_is_found():
    assert {"helpers.metrics", "autograder.pneumonia_checks", "course.grade"} <= set(MODULES)


def test_no_import_cycles():
    cycles = _cycles(_scan()[0])
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_reach_into_private_names():
    reach_ins = _scan()[1]
    assert not reach_ins, "private reach-ins:\n" + "\n".join(reach_ins)
