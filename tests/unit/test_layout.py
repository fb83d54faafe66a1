"""The module table of docs/design.md is the package's tree, and the imports point one way."""

from __future__ import annotations

from pathlib import Path

from tests.readme import README, module_table

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"


def _tree() -> set[str]:
    """Every module of the package as docs/design.md names it: `pkg/module.py`, or `pkg/sub/` for
    a subpackage it names as a whole."""
    named_whole = {"events/normalize", "tools/sandbox", "tools/signals"}
    out = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        whole = next((w for w in named_whole if rel.startswith(w + "/")), None)
        if whole is not None:
            out.add(whole + "/")
        elif path.name != "__init__.py":
            out.add(rel)
    return out


def test_the_design_module_table_matches_the_tree():
    assert module_table() == _tree()


def _imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (at any depth)."""
    import ast

    modules = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        modules[name] = found
    return {m: {i for i in found if i in modules and i != m} for m, found in modules.items()}


def test_no_module_imports_itself_through_others():
    """A module's size is a hint; what keeps the package readable is that its imports form no
    cycle (a module that needs what needs it holds two ideas)."""
    graph = _imports()
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycle = [*path[path.index(imported) :], imported]
                raise AssertionError(" -> ".join(cycle))
            if imported not in state:
                walk(imported, [*path, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])


def test_nothing_outside_the_tools_imports_the_tools():
    graph = _imports()
    upward = {
        (module, imported)
        for module, found in graph.items()
        if not module.startswith("consumer.tools")
        for imported in found
        if imported.startswith("consumer.tools")
    }
    assert upward == set()


def test_the_readme_and_docs_refer_to_nothing_outside_the_repository():
    import re

    for document in (README, *sorted((PACKAGE.parent / "docs").glob("*.md"))):
        assert not re.search(r"\.\./shared|\]\(\.\./\.\.", document.read_text()), document


def test_the_ground_floor_imports_nothing_above_it():
    """Settings, the environment reader and the error tree are what every layer stands on."""
    ground = {"consumer.settings", "consumer.env_reader", "consumer.errors"}
    graph = _imports()
    assert {module: graph[module] - ground for module in ground} == {
        module: set() for module in ground
    }


def test_what_seed_writes_on_the_local_path_stays_out_of_git():
    """The README's local path exports CAPI_CREDENTIALS_DIR=./creds and runs `seed` in the
    project root: its access tokens and the sandbox's configuration are ignored by git."""
    import subprocess

    root = PACKAGE.parent
    written = ["creds/token-us", "creds/secret-us", "sandbox.json"]
    done = subprocess.run(
        ["git", "-C", str(root), "check-ignore", *written], capture_output=True, text=True
    )
    assert done.stdout.split() == written, done.stderr
