"""What the README and docs/ say, held against the code that does it: the Makefile's targets,
the throttle codes, the reason codes and the settings."""

from __future__ import annotations

import re
from pathlib import Path

from consumer.env_reader import EnvReader
from consumer.events.results import Reason
from consumer.meta import client
from consumer.settings import Settings
from tests.readme import README

ROOT = Path(__file__).resolve().parents[2]


def _section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_readme_names_every_make_target():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):.*## ", makefile, re.M))
    readme = README.read_text()
    two_commands = _section(readme, "## Two commands", "\n## ")
    named = set(re.findall(r"`([a-z-]+)`", two_commands)) | {"run", "test", "help"}
    assert targets <= named, sorted(targets - named)


def _codes(text: str) -> set[int]:
    return {int(c) for c in re.findall(r"\d+", text)}


def test_the_throttle_codes_are_the_clients_everywhere_they_are_listed():
    design = (ROOT / "docs" / "design.md").read_text()
    in_design = re.search(r"throttling ([\d, ]+)\)", design)
    rules = (ROOT / "docs" / "meta-rules.md").read_text()
    in_rules = re.search(r"\| codes ([\d, ]+) \| throttled", rules)
    assert in_design and in_rules
    assert _codes(in_design[1]) == _codes(in_rules[1]) == set(client._THROTTLE_CODES)


def test_the_reason_tables_list_exactly_the_reason_codes():
    readme = _section(README.read_text(), "### Reason codes", "\n### ")
    contract = _section(
        (ROOT / "docs" / "contract.md").read_text(), "## Status and reason codes", "\n## "
    )
    codes = {str(r) for r in Reason}
    for table in (readme, contract):
        assert set(re.findall(r"^\| `[A-Z]+` \| `([A-Z_]+)`", table, re.M)) == codes


def test_the_configuration_table_lists_every_setting(tmp_path, monkeypatch):
    readers: list[EnvReader] = []

    class Recording(EnvReader):
        def __init__(self, env):
            super().__init__(env)
            readers.append(self)

    monkeypatch.setattr("consumer.settings.EnvReader", Recording)
    Settings.from_env({"CAPI_CREDENTIALS_DIR": str(tmp_path)})
    table = _section(README.read_text(), "## Configuration", "\n## ")
    documented = set(re.findall(r"^\| `(CAPI_[A-Z_]+)`", table, re.M))
    assert readers[0].asked - documented == set()
