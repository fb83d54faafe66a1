"""The README's module table is the package's tree, and no module outgrows a reading."""

from __future__ import annotations

from pathlib import Path

from tests.readme import README, module_table

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"
MAX_LINES = 350


def _tree() -> set[str]:
    """Every module of the package as the README names it: `pkg/module.py`, or `pkg/sub/` for a
    subpackage the README names as a whole."""
    named_whole = {"events/normalize", "tools/sandbox"}
    out = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        whole = next((w for w in named_whole if rel.startswith(w + "/")), None)
        if whole is not None:
            out.add(whole + "/")
        elif path.name != "__init__.py":
            out.add(rel)
    return out


def test_the_readme_module_table_matches_the_tree():
    assert module_table() == _tree()


def test_no_module_is_over_the_size_limit():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}  # fmt: skip
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_readme_and_docs_refer_to_nothing_outside_the_repository():
    import re

    for document in (README, *sorted((PACKAGE.parent / "docs").glob("*.md"))):
        assert not re.search(r"\.\./shared|\]\(\.\./\.\.", document.read_text()), document
