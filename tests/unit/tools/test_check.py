import pytest

from consumer.settings import Settings
from consumer.tools.check import broker_problems, settings_problems


def _settings(tmp_path, **env):
    return Settings.from_env({"CAPI_CREDENTIALS_DIR": str(tmp_path), **env})


def test_a_sound_sasl_ssl_setup_has_no_problem(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = _settings(
        tmp_path,
        CAPI_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        CAPI_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        CAPI_KAFKA_SASL_USERNAME="capi",
        CAPI_KAFKA_SASL_PASSWORD="secret",
        CAPI_KAFKA_SSL_CA_LOCATION=str(ca),
    )
    assert settings_problems(settings) == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CAPI_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CAPI_KAFKA_SECURITY_PROTOCOL: 'TLS' is not"),
        ({"CAPI_KAFKA_SASL_MECHANISM": "PLAIN"}, "ignores the SASL settings"),
        (
            {
                "CAPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CAPI_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            },
            "CAPI_KAFKA_SASL_USERNAME: required with SASL SCRAM-SHA-256",
        ),
        (
            {"CAPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CAPI_KAFKA_SASL_MECHANISM": "MD5"},
            "CAPI_KAFKA_SASL_MECHANISM: 'MD5' is not a SASL mechanism",
        ),
        (
            {
                "CAPI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "CAPI_KAFKA_SASL_MECHANISM": "PLAIN",
                "CAPI_KAFKA_SASL_USERNAME": "u",
                "CAPI_KAFKA_SASL_PASSWORD": "p",
            },
            "unencrypted",
        ),
        (
            {"CAPI_KAFKA_SECURITY_PROTOCOL": "SSL", "CAPI_KAFKA_SSL_CA_LOCATION": "/nope/ca.pem"},
            "CAPI_KAFKA_SSL_CA_LOCATION: /nope/ca.pem is not a readable file",
        ),
        ({"CAPI_KAFKA_SSL_CA_LOCATION": "/nope/ca.pem"}, "PLAINTEXT does not use TLS"),
        (
            {"CAPI_KAFKA_SECURITY_PROTOCOL": "SSL", "CAPI_KAFKA_SSL_CERTIFICATE_LOCATION": "/c"},
            "go together",
        ),
        (
            {"CAPI_SCHEMA_REGISTRY_URL": "http://registry.example.com"},
            "CAPI_SCHEMA_REGISTRY_URL: plain http",
        ),
    ],
)
def test_each_problem_is_one_line_naming_the_variable(tmp_path, env, expected):
    problems = settings_problems(_settings(tmp_path, **env))
    assert any(expected in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_a_local_sandbox_over_http_is_fine(tmp_path):
    assert settings_problems(_settings(tmp_path, CAPI_GRAPH_URL="http://127.0.0.1:8800")) == []


def test_broker_problems_missing_topics_and_too_few_result_partitions(tmp_path):
    settings = _settings(tmp_path)
    partitions = {
        "conversions.triggered": 6,
        "conversions.results": 3,
        "conversions.retry": 4,
        "conversions.signals": 5,
        "meta-connections": 1,
        "contacts": 1,
        "ad-referrals": 1,
    }
    assert broker_problems(settings, partitions) == [
        "topic conversions.dlq: does not exist",
        "topic conversions.results: 3 partitions, fewer than the 6 of conversions.triggered "
        "(results go to the partition numbered like their input)",
        "topic conversions.retry: 4 partitions, fewer than the 6 of conversions.triggered "
        "(parked events go to the partition numbered like their input)",
        "topic conversions.signals: 5 partitions, fewer than the 6 of conversions.triggered "
        "(signal counts go to the partition numbered like their input)",
    ]
    del partitions["conversions.signals"]
    assert "topic conversions.signals: does not exist" in broker_problems(settings, partitions)
    del partitions["conversions.retry"]
    assert "topic conversions.retry: does not exist" in broker_problems(settings, partitions)


def test_replay_refuses_an_unknown_reason_in_one_line(tmp_path):
    import os

    from tests.cli import run_cli

    env = {**os.environ, "CAPI_CREDENTIALS_DIR": str(tmp_path)}
    out = run_cli(env, "replay-dlq", "--reason", "BOGUS", timeout=60)
    assert out.returncode == 2
    assert "'BOGUS' is not one of 'ASSET_NOT_LINKED'" in out.stderr
    assert "Traceback" not in out.stderr


RETRY_CONFIGS = [
    ({"cleanup.policy": "compact"}, []),
    ({"cleanup.policy": "compact,delete", "retention.ms": "604800000"}, []),
    ({"cleanup.policy": "compact,delete", "retention.ms": "-1"}, []),
    (
        {"cleanup.policy": "delete", "retention.ms": "604800000"},
        [
            "topic conversions.retry: cleanup.policy=delete; the retry topic must be compacted "
            "(cleanup.policy=compact): its records are the parked events' latest state, and "
            "deleted ones are never sent nor get a result"
        ],
    ),
    (
        {"cleanup.policy": "compact,delete", "retention.ms": "86400000"},
        [
            "topic conversions.retry: retention.ms=86400000 deletes parked events before Meta's "
            "7 days (604800000); raise it or use cleanup.policy=compact alone"
        ],
    ),
]


@pytest.mark.parametrize(("config", "problems"), RETRY_CONFIGS)
def test_a_retry_topic_that_would_lose_parked_events_is_reported(config, problems):
    from consumer.tools.check import retry_topic_problems

    assert retry_topic_problems("conversions.retry", config) == problems
