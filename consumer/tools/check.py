"""`capi-consumer check`: what is wrong with the configuration, one line per problem.

Pure checks of the settings (security protocol, SASL and TLS files, URLs) come first; then the
broker is asked for the topics the service needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from consumer.env_reader import check_readable_dir
from consumer.errors import CapiConsumerError, ConfigError
from consumer.settings import Settings

__all__ = [
    "broker_problems",
    "registry_problems",
    "retry_topic_problems",
    "settings_problems",
    "topic_config",
]

_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"}
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_WEEK_MS = 7 * 24 * 3600 * 1000


def settings_problems(settings: Settings) -> list[str]:
    kafka = {k.lower(): v for k, v in settings.kafka.items()}
    protocol = kafka.get("security.protocol", "PLAINTEXT").upper()
    return [
        *_protocol_problems(kafka, protocol),
        *_sasl_problems(kafka, protocol),
        *_tls_problems(kafka, protocol),
        *_url_problems(settings),
    ]


def _protocol_problems(kafka: dict[str, str], protocol: str) -> list[str]:
    problems: list[str] = []
    if protocol not in _PROTOCOLS:
        choices = ", ".join(sorted(_PROTOCOLS))
        problems.append(f"CAPI_KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of {choices}")
    sasl_keys = [k for k in kafka if k.startswith("sasl.")]
    if sasl_keys and not protocol.startswith("SASL"):
        problems.append(
            f"CAPI_KAFKA_SECURITY_PROTOCOL: {protocol} ignores the SASL settings "
            f"({', '.join(sorted(sasl_keys))}); use SASL_SSL"
        )
    return problems


def _sasl_problems(kafka: dict[str, str], protocol: str) -> list[str]:
    if not protocol.startswith("SASL"):
        return []
    problems: list[str] = []
    mechanism = kafka.get("sasl.mechanism", kafka.get("sasl.mechanisms", "GSSAPI")).upper()
    if mechanism not in _MECHANISMS:
        problems.append(f"CAPI_KAFKA_SASL_MECHANISM: {mechanism!r} is not a SASL mechanism")
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        for key in ("sasl.username", "sasl.password"):
            if not kafka.get(key):
                problems.append(f"{_variable(key)}: required with SASL {mechanism}")
    if protocol == "SASL_PLAINTEXT" and mechanism != "GSSAPI":
        problems.append(
            "CAPI_KAFKA_SECURITY_PROTOCOL: SASL_PLAINTEXT sends the SASL credentials "
            "unencrypted; use SASL_SSL"
        )
    return problems


def _tls_problems(kafka: dict[str, str], protocol: str) -> list[str]:
    problems: list[str] = []
    for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
        value = kafka.get(key)
        if value and not protocol.endswith("SSL"):
            problems.append(f"{_variable(key)}: set, but {protocol} does not use TLS")
        if value and not _readable_file(value):
            problems.append(f"{_variable(key)}: {value} is not a readable file")
    if bool(kafka.get("ssl.certificate.location")) != bool(kafka.get("ssl.key.location")):
        problems.append(
            "CAPI_KAFKA_SSL_CERTIFICATE_LOCATION and CAPI_KAFKA_SSL_KEY_LOCATION go together"
        )
    return problems


def _url_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    for variable, url in (
        ("CAPI_GRAPH_URL", settings.graph_url),
        ("CAPI_SCHEMA_REGISTRY_URL", settings.schema_registry_url),
    ):
        if url and urlsplit(url).scheme == "http" and urlsplit(url).hostname not in _LOCAL_HOSTS:
            problems.append(f"{variable}: plain http to a remote host; use https")
    try:  # the words `run` stops with
        check_readable_dir("CAPI_CREDENTIALS_DIR", settings.credentials_dir)
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


def _variable(key: str) -> str:
    """The environment variable of a librdkafka setting."""
    return "CAPI_KAFKA_" + key.upper().replace(".", "_")


def _readable_file(value: str) -> bool:
    path = Path(value)
    return path.is_file() and os.access(path, os.R_OK)


def broker_problems(settings: Settings, partitions: Mapping[str, int]) -> list[str]:
    """What the broker's topics (name -> partitions) lack for the service."""
    t = settings.topics
    problems = []
    needed = (t.triggered, t.results, t.dlq, t.retry, t.signals)
    for topic in (*needed, t.connections, t.contacts, t.referrals):
        if topic not in partitions:
            problems.append(f"topic {topic}: does not exist")
    inputs = partitions.get(t.triggered)
    paired = ((t.results, "results"), (t.retry, "parked events"), (t.signals, "signal counts"))
    for topic, what in paired:
        count = partitions.get(topic)
        if inputs is not None and count is not None and count < inputs:
            problems.append(
                f"topic {topic}: {count} partitions, fewer than the {inputs} of "
                f"{t.triggered} ({what} go to the partition numbered like their input)"
            )
    return problems


def retry_topic_problems(topic: str, config: Mapping[str, str]) -> list[str]:
    """What the retry topic's configuration (`cleanup.policy`, `retention.ms`) would lose: a
    parked event is kept there until Meta takes it, up to Meta's 7 days."""
    policy = {p.strip() for p in config.get("cleanup.policy", "delete").split(",")}
    problems = []
    if "compact" not in policy:
        problems.append(
            f"topic {topic}: cleanup.policy={config.get('cleanup.policy', 'delete')}; the retry "
            "topic must be compacted (cleanup.policy=compact): its records are the parked "
            "events' latest state, and deleted ones are never sent nor get a result"
        )
    retention = int(config.get("retention.ms", "604800000"))
    if "delete" in policy and 0 <= retention < _WEEK_MS:
        problems.append(
            f"topic {topic}: retention.ms={retention} deletes parked events before Meta's "
            f"7 days ({_WEEK_MS}); raise it or use cleanup.policy=compact alone"
        )
    return problems


def topic_config(
    admin_config: Mapping[str, Any], topic: str, timeout_s: float = 10.0
) -> dict[str, str]:
    """A topic's configuration as the broker reports it (`CapiConsumerError` if it cannot)."""
    from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

    admin = AdminClient({**admin_config, "log_level": "0"})
    resource = ConfigResource("topic", topic)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
    except Exception as exc:  # any failure: the configuration could not be read
        raise CapiConsumerError(
            f"topic {topic}: its configuration could not be read: {exc}"
        ) from exc
    return {name: str(entry.value) for name, entry in entries.items() if entry.value is not None}


def registry_problems(settings: Settings) -> list[str]:
    """With a Schema Registry: the result schema must be registered (`run` looks it up)."""
    if not settings.schema_registry_url or settings.schema_registry_auto_register:
        return []
    from consumer.service.loop import codec_for

    try:
        codec_for(settings).schema_id("ConversionResult", settings.topics.results)
    except CapiConsumerError as exc:  # not registered, or the registry does not answer
        return [f"CAPI_SCHEMA_REGISTRY_URL: {exc}"]
    return []
