import pytest

from consumer.errors import ConfigError
from consumer.settings import DEFAULT_RESTRICTED_COUNTRIES, Secret, Settings
from tests.cli import run_cli


def test_defaults_match_the_contract(tmp_path):
    s = Settings.from_env({"CAPI_CREDENTIALS_DIR": str(tmp_path)})
    assert s.bootstrap_servers == "localhost:9092"
    assert s.group_id == "capi-consumer"
    assert s.topics.triggered == "conversions.triggered"
    assert s.topics.contacts == "contacts"
    assert s.topics.referrals == "ad-referrals"
    assert s.topics.connections == "meta-connections"
    assert s.topics.results == "conversions.results"
    assert s.topics.dlq == "conversions.dlq"
    assert s.schema_registry_url is None
    assert s.graph_url == "https://graph.facebook.com"
    assert s.metrics_port == 9464
    assert str(s.state_dir) == "state"
    assert s.batch_size == 1000
    assert len(DEFAULT_RESTRICTED_COUNTRIES) == 32
    assert (s.signal_health_interval_s, s.signal_health_series) == (300, 20)


def test_librdkafka_passthrough_reads_underscores_as_dots(tmp_path):
    s = Settings.from_env(
        {
            "CAPI_CREDENTIALS_DIR": str(tmp_path),
            "CAPI_KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
            "CAPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CAPI_KAFKA_SASL_MECHANISM": "PLAIN",
        }
    )
    assert s.bootstrap_servers == "b1:9093,b2:9093"
    assert s.kafka == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    assert s.kafka_config("consumer")["bootstrap.servers"] == "b1:9093,b2:9093"


def test_passthrough_is_split_by_client_role(tmp_path):
    s = Settings.from_env(
        {
            "CAPI_CREDENTIALS_DIR": str(tmp_path),
            "CAPI_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "CAPI_KAFKA_LINGER_MS": "20",
            "CAPI_KAFKA_SSL_CA_LOCATION": "/ca.pem",
        }
    )
    assert s.kafka_config("consumer") == {
        "bootstrap.servers": "localhost:9092",
        "session.timeout.ms": "6000",
        "ssl.ca.location": "/ca.pem",
    }
    assert s.kafka_config("producer") == {
        "bootstrap.servers": "localhost:9092",
        "linger.ms": "20",
        "ssl.ca.location": "/ca.pem",
    }
    assert s.kafka_config("admin") == {
        "bootstrap.servers": "localhost:9092",
        "ssl.ca.location": "/ca.pem",
    }


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CAPI_BATCH_SIZE", "1001", "out of range"),
        ("CAPI_BATCH_SIZE", "0", "out of range"),
        ("CAPI_BATCH_SIZE", "ten", "not a whole number"),
        ("CAPI_GRAPH_URL", "graph.facebook.com", "not an http(s) URL"),
        ("CAPI_GRAPH_URL", "https://user:pw@graph.facebook.com", "credentials"),
        ("CAPI_GRAPH_URL", "http://graph.facebook.com", "must be https"),
        ("CAPI_GRAPH_URL", "http://10.0.0.8:8800", "must be https"),
        ("CAPI_SCHEMA_REGISTRY_AUTO_REGISTER", "yes", "not one of true, false"),
        ("CAPI_LOG_FORMAT", "xml", "'xml' is not one of text, json"),
        ("CAPI_RESTRICTED_COUNTRIES", "DE,XX", "not ISO 3166-1 alpha-2 codes: XX"),
        ("CAPI_DEFAULT_PHONE_REGION", "ZZ", "'ZZ' is not a country"),
        ("CAPI_SCHEMA_REGISTRY_URL", "ftp://registry", "not an http(s) URL"),
        ("CAPI_GRAPH_API_VERSION", "v19.0", "not a supported version"),
        ("CAPI_GRAPH_API_VERSION", "24", "not a Graph API version"),
        ("CAPI_METRICS_PORT", "70000", "out of range"),
        ("CAPI_RESTRICTED_COUNTRIES", "DE,Germany", "not ISO 3166-1 alpha-2"),
        ("CAPI_GROUP_ID", " ", "must not be empty"),
        ("CAPI_LOG_LEVEL", "LOUD", "not one of"),
        ("CAPI_WORKERS", "0", "out of range"),
        ("CAPI_WORKERS", "65", "out of range"),
        ("CAPI_SIGNAL_HEALTH_INTERVAL_S", "-1", "out of range"),
        ("CAPI_SIGNAL_HEALTH_INTERVAL_S", "5m", "not a whole number"),
        ("CAPI_SIGNAL_HEALTH_SERIES", "1001", "out of range"),
    ],
)
def test_bad_values_name_the_variable(tmp_path, variable, value, message):
    env = {"CAPI_CREDENTIALS_DIR": str(tmp_path), variable: value}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable
    assert message in str(info.value)


def test_workers_do_not_need_ports_after_the_service_port(tmp_path):
    env = {"CAPI_CREDENTIALS_DIR": str(tmp_path), "CAPI_WORKERS": "4", "CAPI_METRICS_PORT": "65535"}
    assert Settings.from_env(env).workers == 4  # the supervisor picks its workers' ports


def test_unreadable_credentials_dir_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="CAPI_CREDENTIALS_DIR"):
        Settings.from_env({"CAPI_CREDENTIALS_DIR": str(tmp_path / "missing")})


def test_restricted_countries_are_configurable(tmp_path):
    s = Settings.from_env(
        {"CAPI_CREDENTIALS_DIR": str(tmp_path), "CAPI_RESTRICTED_COUNTRIES": "de, fr"}
    )
    assert s.restricted_countries == frozenset({"DE", "FR"})


def test_secret_never_prints_its_value():
    secret = Secret("EAAB-very-secret")
    assert "EAAB" not in repr(secret)
    assert "EAAB" not in str(secret)
    assert "EAAB" not in f"{secret}"
    assert secret.reveal() == "EAAB-very-secret"


def test_cli_exits_2_with_one_line_naming_the_variable(tmp_path):
    env = {"PATH": "", "CAPI_CREDENTIALS_DIR": str(tmp_path), "CAPI_BATCH_SIZE": "5000"}
    proc = run_cli(env, "run", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "CAPI_BATCH_SIZE" in lines[0]


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("CAPI_BATCHSIZE", "CAPI_BATCHSIZE: no such setting (did you mean CAPI_BATCH_SIZE?)"),
        (
            "CAPI_TOPIC_RESULT",
            "CAPI_TOPIC_RESULT: no such setting (did you mean CAPI_TOPIC_RESULTS?)",
        ),
        (
            "CAPI_PARTNER_AGNET",
            "CAPI_PARTNER_AGNET: no such setting (did you mean CAPI_PARTNER_AGENT?)",
        ),
        ("CAPI_NOTHING_LIKE_IT", "CAPI_NOTHING_LIKE_IT: no such setting"),
    ],
)
def test_a_variable_no_setting_reads_is_refused_with_the_closest_name(tmp_path, variable, message):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"CAPI_CREDENTIALS_DIR": str(tmp_path), variable: "10"})
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "CAPI_KAFKA_BOOTSTRAP_SERVER",
            "CAPI_KAFKA_BOOTSTRAP_SERVER: librdkafka has no setting bootstrap.server "
            "(did you mean CAPI_KAFKA_BOOTSTRAP_SERVERS?)",
        ),
        (
            "CAPI_KAFKA_SECURITY_PROTOCL",
            "CAPI_KAFKA_SECURITY_PROTOCL: librdkafka has no setting security.protocl "
            "(did you mean CAPI_KAFKA_SECURITY_PROTOCOL?)",
        ),
        (
            "CAPI_KAFKA_SESION_TIMEOUT_MS",
            "CAPI_KAFKA_SESION_TIMEOUT_MS: librdkafka has no setting sesion.timeout.ms "
            "(did you mean CAPI_KAFKA_SESSION_TIMEOUT_MS?)",
        ),
    ],
)
def test_a_kafka_setting_librdkafka_does_not_have_is_refused(tmp_path, variable, message):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"CAPI_CREDENTIALS_DIR": str(tmp_path), variable: "1"})
    assert str(refused.value) == message


def test_librdkafka_settings_of_either_role_and_the_test_tooling_are_accepted(tmp_path):
    env = {
        "CAPI_CREDENTIALS_DIR": str(tmp_path),
        "CAPI_KAFKA_SESSION_TIMEOUT_MS": "6000",  # a consumer's
        "CAPI_KAFKA_LINGER_MS": "5",  # a producer's
        "CAPI_KAFKA_CLIENT_ID": "capi",  # both
        "CAPI_TEST_KAFKA_BOOTSTRAP": "127.0.0.1:9092",  # the test suite's own
    }
    assert Settings.from_env(env).kafka["session.timeout.ms"] == "6000"


def test_deployments_that_share_the_prefix_may_turn_the_check_off(tmp_path):
    env = {
        "CAPI_CREDENTIALS_DIR": str(tmp_path),
        "CAPI_OTHER_APPS_SETTING": "x",
        "CAPI_UNKNOWN_VARIABLES_ALLOWED": "true",
    }
    assert Settings.from_env(env).batch_size == Settings().batch_size


def test_a_typo_stops_check_with_one_line_and_exit_2(tmp_path):
    env = {"PATH": "", "CAPI_CREDENTIALS_DIR": str(tmp_path), "CAPI_BATCHSIZE": "10"}
    proc = run_cli(env, "check", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "capi-consumer: configuration error: CAPI_BATCHSIZE: no such setting "
        "(did you mean CAPI_BATCH_SIZE?)"
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, Settings().partner_agent),
        ({"CAPI_PARTNER_AGENT": ""}, None),
        ({"CAPI_PARTNER_AGENT": "x/1"}, "x/1"),
    ],
)
def test_an_empty_partner_agent_turns_it_off(tmp_path, given, expected):
    env = {"CAPI_CREDENTIALS_DIR": str(tmp_path), **given}
    assert Settings.from_env(env).partner_agent == expected
