"""Dead letters replayed after the cause is fixed: processed again, once."""

import os

import pytest

from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.cli import run_cli
from tests.integration.harness import RunningApp, settings_for, write_credentials

pytestmark = pytest.mark.integration
CODEC = AvroCodec(SchemaStore())
WORLD = SampleWorld()


def _replay_command(kafka_bootstrap, topics, settings, creds):
    """`capi-consumer replay-dlq` as the operator runs it against the service's topics."""
    env = {
        **os.environ,
        "CAPI_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CAPI_GROUP_ID": settings.group_id,
        "CAPI_TOPIC_TRIGGERED": topics.triggered,
        "CAPI_TOPIC_DLQ": topics.dlq,
        "CAPI_CREDENTIALS_DIR": str(creds),
    }

    def replay(*args):
        return run_cli(env, "replay-dlq", *args)

    return replay


@pytest.mark.long
def test_replay_after_the_connection_appears(kafka_bootstrap, topics, tmp_path):
    triggers = [
        {**t, "event_id": f"late-{i}"}
        for i, t in enumerate(WORLD.triggers(40, seed=8, only_valid=True))
        if t["connection_id"] == "conn-us"
    ][:10]
    others = [c for c in WORLD.connections() if c["connection_id"] != "conn-us"]
    with SandboxProcess(sandbox_config(WORLD)) as sandbox:
        creds = write_credentials(tmp_path / "creds", WORLD.credentials)
        settings = settings_for(
            kafka_bootstrap, topics, sandbox.url, creds, state_dir=tmp_path / "s"
        )
        produce_sample_traffic(kafka_bootstrap, topics, CODEC, triggers, others)
        reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
        replay = _replay_command(kafka_bootstrap, topics, settings, creds)
        with RunningApp(settings):
            assert reader.read_until(10, 60)
            assert {r["reason"] for r in reader.results} == {"UNKNOWN_CONNECTION"}
            # the operator fixes the cause, then replays
            produce_sample_traffic(kafka_bootstrap, topics, CODEC, [], WORLD.connections())
            dry = replay("--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "would have replayed 10" in dry.stdout
            other = replay("--reason", "RETRIES_EXHAUSTED")
            assert "replayed 0" in other.stdout
            done = replay("--reason", "UNKNOWN_CONNECTION")
            assert done.returncode == 0, done.stderr
            assert "replayed 10" in done.stdout
            assert reader.read_until(20, 60)
            again = replay("--reason", "UNKNOWN_CONNECTION")
            assert "replayed 0" in again.stdout
            # a replay of everything replays them again: now SENT, they are duplicates
            everything = replay()
            assert "replayed 10" in everything.stdout
            assert reader.read_until(30, 60)
        reader.close()
        replayed = reader.results[10:20]
        assert {r["status"] for r in replayed} == {"SENT"}
        assert sorted(r["event_id"] for r in replayed) == sorted(t["event_id"] for t in triggers)
        assert {r["reason"] for r in reader.results[20:]} == {"DUPLICATE"}
        assert sandbox.stats()["accepted_events"] == 10


@pytest.mark.long
def test_a_rotated_app_secret_fails_whole_requests_whose_dead_letters_replay_once_fixed(
    kafka_bootstrap, topics, tmp_path
):
    """Meta refuses the appsecret_proof of a connection whose app secret was rotated (code 100,
    about the request, not one of its events): each request fails whole, not split, and every
    event is META_AUTH_ERROR with a dead letter; with the new secret in the credentials folder,
    the replay sends them."""
    triggers = WORLD.triggers(120, seed=10, only_valid=True)
    affected = sorted(t["event_id"] for t in triggers if t["connection_id"] == "conn-us")
    config = sandbox_config(WORLD)
    token = WORLD.credentials["token-us"]
    config["tokens"][token] = {**config["tokens"][token], "app_secret": "rotated-app-secret"}
    with SandboxProcess(config) as sandbox:
        creds = write_credentials(tmp_path / "creds", WORLD.credentials)
        settings = settings_for(
            kafka_bootstrap,
            topics,
            sandbox.url,
            creds,
            state_dir=tmp_path / "s",
            batch_linger_ms=500,
        )
        produce_sample_traffic(kafka_bootstrap, topics, CODEC, triggers, WORLD.connections())
        reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
        replay = _replay_command(kafka_bootstrap, topics, settings, creds)
        with RunningApp(settings):
            assert reader.read_until(len(triggers), 60)
            failed = [r for r in reader.results if r["status"] == "FAILED"]
            assert sorted(r["event_id"] for r in failed) == affected
            assert {(r["reason"], r["meta_error"]["code"]) for r in failed} == {
                ("META_AUTH_ERROR", 100)
            }
            refused = [q for q in sandbox.requests() if q["status"] != 200]
            assert {q["error_code"] for q in refused} == {100}
            assert 0 < len(refused) < len(failed)  # whole batches: splitting sends ~2N
            dry = replay("--dry-run")
            assert f"would have replayed {len(affected)} " in dry.stdout, dry.stderr
            # the operator puts the new secret in place (read again without a restart)
            write_credentials(creds, {"secret-us": "rotated-app-secret"})
            done = replay("--reason", "META_AUTH_ERROR")
            assert done.returncode == 0, done.stderr
            assert f"replayed {len(affected)} " in done.stdout
            assert reader.read_until(len(triggers) + len(affected), 60)
        reader.close()
        replayed = reader.results[len(triggers) :]
        assert {r["status"] for r in replayed} == {"SENT"}
        assert sorted(r["event_id"] for r in replayed) == affected
        assert sandbox.stats()["accepted_events"] == len(triggers)


def test_replay_without_a_topic_or_a_broker_is_one_line(kafka_bootstrap, tmp_path):
    import socket

    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPI_")}
    env |= {
        "CAPI_CREDENTIALS_DIR": str(tmp_path),
        "CAPI_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CAPI_TOPIC_DLQ": "no-such-dlq",
    }
    missing = run_cli(env, "replay-dlq")
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        f"capi-consumer: topic no-such-dlq does not exist on {kafka_bootstrap} "
        "(capi-consumer topics create)"
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env["CAPI_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{s.getsockname()[1]}"  # nobody listens
        unreachable = run_cli(env, "replay-dlq")
    assert unreachable.returncode == 1
    [line] = unreachable.stderr.splitlines()
    assert line.startswith(f"capi-consumer: broker {env['CAPI_KAFKA_BOOTSTRAP_SERVERS']}: ")
