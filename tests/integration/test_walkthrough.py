"""The README's walkthrough "From the demo to a running service", command by command.

The commands are read from the README's code blocks, so the test fails when the README drifts
from what the commands do. Each runs as its own process on an embedded broker that `capi-consumer
broker` starts, in a scratch folder (the walkthrough writes `./creds`, `sandbox.json` and
`./state` where it runs). Two substitutions: free ports instead of 9092 and 8800, and 50 sample
triggers instead of 100.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from consumer.tools.embedded_broker import free_port, stop_process
from tests.cli import start_cli
from tests.readme import README

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
TRIGGERS = 50
STEPS = ["broker", "topics", "seed", "sandbox", "run", "produce", "tail", "test-event"]


def walkthrough():
    """The section's commands in order: each a list of words, continuation lines joined."""
    text = README.read_text()
    assert "### From the demo to a running service" in text
    section = text.split("### From the demo to a running service", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def _cli(env, cwd, *args, timeout=60):
    """One command to its end, in `cwd`."""
    proc = start_cli(env, *args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _ok(env, cwd, *args):
    done = _cli(env, cwd, *args)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done


def test_the_readme_documents_every_step():
    commands = walkthrough()
    steps = [words[1] for words in commands if words[0] == "capi-consumer"]
    assert steps == STEPS
    exported = {w.split("=", 1)[0] for words in commands if words[0] == "export" for w in words[1:]}
    assert {"CAPI_KAFKA_BOOTSTRAP_SERVERS", "CAPI_CREDENTIALS_DIR", "CAPI_GRAPH_URL"} <= exported
    assert ["capi-consumer", "topics", "create"] in commands


class Walkthrough:
    """Runs the README's commands; keeps the long-running ones to stop them at the end."""

    def __init__(self, tmp_path):
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CAPI_")}
        self.env["CAPI_METRICS_PORT"] = "0"  # the README's default port may be in use here
        self.broker_port, self.sandbox_port = free_port(), free_port()
        self.broker_exports = []
        self.background = {}

    def export(self, words):
        line = " ".join(words)
        if words[1].startswith("CAPI_KAFKA_"):  # what the broker printed, as the README says
            assert line in self.broker_exports, (line, self.broker_exports)
        for assignment in words[1:]:
            name, value = assignment.split("=", 1)
            self.env[name] = value.replace(":9092", f":{self.broker_port}").replace(
                ":8800", f":{self.sandbox_port}"
            )

    def broker(self, args):
        proc = self.start([*args, "--port", str(self.broker_port)], stdout=subprocess.PIPE)
        lines = [proc.stdout.readline().strip() for _ in range(4)]
        servers = f"127.0.0.1:{self.broker_port}"
        assert lines[0] == f"bootstrap servers: {servers}", lines
        assert lines[1] == f"export CAPI_KAFKA_BOOTSTRAP_SERVERS={servers}"
        assert "in memory" in lines[3]
        self.broker_exports = [
            lines[1].replace(servers, "127.0.0.1:9092"),
            lines[2].split("  #", 1)[0],
        ]

    def start(self, args, **popen):
        proc = start_cli(self.env, *args[1:], cwd=self.cwd, text=True, **popen)
        self.background[args[1]] = proc
        return proc

    def stop(self):
        for proc in self.background.values():
            stop_process(proc, timeout_s=10)


def _check_topics(done):
    lines = done.stdout.splitlines()
    assert len(lines) == 8, lines
    assert all(" created  3 partitions" in line for line in lines), lines
    assert sum("compacted" in line for line in lines) == 5  # the tables, retry and signals


def _check_seed(done, cwd):
    assert re.search(r"^meta-connections +3 connections$", done.stdout, re.MULTILINE)
    # the ids a hand-written trigger needs
    assert re.search(
        r"^connection conn-us +ACTIVE, datasets ds-1, ds-2; assets waba-100 \(US\), page-200",
        done.stdout,
        re.MULTILINE,
    ), done.stdout
    assert re.search(r"^contacts +5000 contacts$", done.stdout, re.MULTILINE)
    assert sorted(p.name for p in (cwd / "creds").iterdir()) == [
        "secret-us",
        "token-2",
        "token-off",
        "token-us",
    ]
    assert json.loads((cwd / "sandbox.json").read_text())["tokens"]


def _tail_until(run, results, deadline_s=60):
    """`tail results` again and again until every trigger has its result."""
    deadline = time.monotonic() + deadline_s
    while True:
        done = _ok(run.env, run.cwd, *results)
        rows = done.stdout.splitlines()[1:]
        if len(rows) >= TRIGGERS or time.monotonic() > deadline:
            return done
        assert run.background["run"].poll() is None, "run stopped"
        time.sleep(0.5)


def _check_results(done):
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["EVENT_ID", "STATUS", "REASON", "DATASET", "SOURCE"]
    assert len(rows) == TRIGGERS, done.stdout
    assert {row.split()[1] for row in rows} <= {"SENT", "SKIPPED", "FAILED"}
    assert "SENT" in {row.split()[1] for row in rows}
    assert len({row.split()[-1] for row in rows}) == TRIGGERS  # one per input partition/offset
    assert done.stderr.strip() == f"{TRIGGERS} results in conversions.results"


def test_the_walkthrough_from_the_demo_to_a_running_service(tmp_path):
    run = Walkthrough(tmp_path)
    try:
        for words in walkthrough():
            if words[0] == "export":
                run.export(words)
                continue
            step, args = words[1], [w for w in words if w != "&"]
            if step == "broker":
                run.broker(args)
            elif step == "sandbox":
                args[args.index("--port") + 1] = str(run.sandbox_port)
                proc = run.start(args, stdout=subprocess.PIPE)
                assert proc.stdout.readline().strip().endswith(f":{run.sandbox_port}")
            elif step == "run":
                run.start(args, stderr=subprocess.PIPE)
            elif step == "produce":
                args[args.index("--sample") + 1] = str(TRIGGERS)
                done = _ok(run.env, run.cwd, *args[1:])
                assert (
                    done.stdout.strip() == f"produced {TRIGGERS} triggers to conversions.triggered"
                )
            elif step == "tail":
                _check_results(_tail_until(run, args[1:]))
            elif step == "test-event":
                done = _ok(run.env, run.cwd, *args[1:])
                assert "test event sent" in done.stdout
                assert json.loads(done.stdout.split("Response\n", 1)[1])["events_received"] == 1
            elif step == "topics":
                _check_topics(_ok(run.env, run.cwd, *args[1:]))
            else:
                _check_seed(_ok(run.env, run.cwd, *args[1:]), tmp_path)
        service = run.background.pop("run")
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
        assert service.returncode == 0, stderr[-2000:]
        assert "draining" in stderr
        dlq = _ok(run.env, run.cwd, "tail", "dlq", "--json")
        assert all("error" in json.loads(line) for line in dlq.stdout.splitlines())
        broker = run.background.pop("broker")
        broker.send_signal(signal.SIGTERM)
        assert broker.wait(timeout=10) == 0
    finally:
        run.stop()


def test_an_unreachable_broker_and_a_bad_trigger_are_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPI_")}
    env["CAPI_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = _cli(env, tmp_path, "topics", "create")
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert done.stderr.startswith(f"capi-consumer: broker {env['CAPI_KAFKA_BOOTSTRAP_SERVERS']}: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    trigger = Path(tmp_path / "trigger.json")
    trigger.write_text(
        json.dumps({"contact_id": "c-1", "workspace_id": "ws-1", "channel": "WHATSUP"})
    )
    done = _cli(env, tmp_path, "produce", "--json", str(trigger))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f'capi-consumer: {trigger}: channel: "WHATSUP" is not one of WHATSAPP, MESSENGER, INSTAGRAM'
    ]
