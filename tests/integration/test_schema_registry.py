"""The Confluent framing through the real `SchemaRegistryClient`, against a minimal registry:
registration only when asked, lookups otherwise, basic authentication from the credentials
folder, and an outage that is a passing condition."""

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.errors import ConfigError, DecodeError, SchemaUnavailableError
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.service.loop import registry_config
from consumer.settings import Settings
from tests.factories import trigger_record
from tests.registry import MinimalRegistry

pytestmark = pytest.mark.integration


@pytest.fixture
def registry():
    with MinimalRegistry() as running:
        yield running


def _codec(url, **kwargs):
    return AvroCodec(SchemaStore(), SchemaRegistryClient({"url": url}), **kwargs)


def test_confluent_framing_through_the_real_registry_client(registry):
    codec = _codec(registry.url, auto_register=True)
    record = trigger_record()
    data = codec.encode("ConversionTriggered", record, "conversions.triggered")
    assert data[0] == 0
    assert registry.subjects == {"conversions.triggered-value": [1]}
    # a second codec (another process) resolves the writer schema by id from the registry
    assert _codec(registry.url).decode(data, "ConversionTriggered") == record


def test_the_service_looks_its_schema_up_and_registers_it_only_when_told(registry):
    with pytest.raises(DecodeError, match="not registered under results-value"):
        _codec(registry.url).schema_id("ConversionResult", "results")
    assert registry.subjects == {}
    registered = _codec(registry.url, auto_register=True).schema_id("ConversionResult", "results")
    assert _codec(registry.url).schema_id("ConversionResult", "results") == registered
    assert registry.subjects == {"results-value": [registered]}  # the lookup registered nothing


def test_unknown_schema_id_is_a_decode_error(registry):
    with pytest.raises(DecodeError, match="schema id 42"):
        _codec(registry.url).decode(b"\x00\x00\x00\x00\x2a\x02", "ConversionTriggered")


def test_a_stopped_registry_is_waited_for(registry):
    data = _codec(registry.url, auto_register=True).encode(
        "ConversionTriggered", trigger_record(), "t"
    )
    codec = _codec(registry.url)
    registry.stop()
    with pytest.raises(SchemaUnavailableError):
        codec.decode(data, "ConversionTriggered")
    assert codec.registry_problem is not None
    registry.start()  # the same port
    assert codec.decode(data, "ConversionTriggered") == trigger_record()
    assert codec.registry_problem is None


def test_basic_authentication_read_from_the_credentials_folder(tmp_path):
    (tmp_path / "schema-registry").write_text("svc-capi:s3cret\n")
    with MinimalRegistry(user_info="svc-capi:s3cret") as registry:
        settings = Settings(schema_registry_url=registry.url, credentials_dir=tmp_path)
        authed = AvroCodec(
            SchemaStore(), SchemaRegistryClient(registry_config(settings)), auto_register=True
        )
        assert authed.schema_id("ConversionResult", "results") == 1
        anonymous = _codec(registry.url, auto_register=True)
        with pytest.raises(SchemaUnavailableError):  # waited for, never a failed message
            anonymous.schema_id("ConversionResult", "results")
        assert "401" in anonymous.registry_problem
    (tmp_path / "schema-registry").write_text("no separator")
    with pytest.raises(ConfigError, match="user:password"):
        registry_config(settings)
    assert "s3cret" not in repr(settings)


def test_test_event_reads_registry_framed_tables(registry, kafka_bootstrap, topics, tmp_path):
    """`test-event` reads the connections table with the registry when there is one (it used
    to read it without, and every connection was undecodable: UNKNOWN_CONNECTION)."""
    from consumer.tools.demo import produce_sample_traffic
    from consumer.tools.samples import SampleWorld
    from consumer.tools.send_test_event import read_reference_tables

    world = SampleWorld()
    framed = _codec(registry.url, auto_register=True)
    produce_sample_traffic(kafka_bootstrap, topics, framed, [], world.connections())
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topics=topics,
        schema_registry_url=registry.url,
        credentials_dir=tmp_path,
    )
    tables, close = read_reference_tables(settings, with_contacts=False)
    try:
        assert tables.connections.get("conn-us") is not None
    finally:
        close()


def test_check_says_when_the_result_schema_is_not_registered(registry, tmp_path):
    from consumer.tools.check import registry_problems

    settings = Settings(schema_registry_url=registry.url, credentials_dir=tmp_path)
    [problem] = registry_problems(settings)
    assert problem.startswith("CAPI_SCHEMA_REGISTRY_URL: schema ConversionResult is not registered")
    _codec(registry.url, auto_register=True).schema_id("ConversionResult", settings.topics.results)
    assert registry_problems(settings) == []
