"""Settings: one frozen object built from the environment at the entry point.

Every variable is `CAPI_*` (the README's configuration table). Any
`CAPI_KAFKA_<SETTING>` passes through to librdkafka with `_` read as `.`. A bad value raises
`ConfigError` naming the variable; the CLI turns that into one line and exit code 2.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from consumer.env_reader import (
    EnvReader,
    check_readable_dir,
    https_or_loopback,
)
from consumer.errors import ConfigError

__all__ = [
    "DEFAULT_GRAPH_VERSION",
    "DEFAULT_RESTRICTED_COUNTRIES",
    "MAX_BATCH_SIZE",
    "PARKING_DELAYS_S",
    "SUPPORTED_GRAPH_VERSIONS",
    "Secret",
    "Settings",
    "Topics",
]

MAX_BATCH_SIZE = 1000

# Graph API versions Meta supports today; v19.0 and v20.0 have expired.
SUPPORTED_GRAPH_VERSIONS: tuple[str, ...] = ("v22.0", "v23.0", "v24.0", "v25.0", "v26.0")
DEFAULT_GRAPH_VERSION = "v24.0"

# the waits of a parked event before its next tries (then the last one, again and again)
PARKING_DELAYS_S: tuple[float, ...] = (60.0, 300.0, 1800.0, 3600.0)

# ePrivacy Directive: EU-27, Norway, Iceland, Liechtenstein, United Kingdom, Japan.
DEFAULT_RESTRICTED_COUNTRIES: frozenset[str] = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "NO",
        "IS",
        "LI",
        "GB",
        "JP",
    ]
)

_KAFKA_PREFIX = "CAPI_KAFKA_"
# librdkafka warns when a client gets another role's setting; the passthrough is split by role.
_CONSUMER_ONLY = frozenset(
    [
        "group.id",
        "group.instance.id",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "auto.offset.reset",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "enable.auto.offset.store",
        "partition.assignment.strategy",
        "isolation.level",
        "fetch.min.bytes",
        "fetch.max.bytes",
        "fetch.wait.max.ms",
        "max.partition.fetch.bytes",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "enable.partition.eof",
        "check.crcs",
        "group.protocol",
        "group.remote.assignor",
    ]
)
_PRODUCER_ONLY = frozenset(
    [
        "acks",
        "request.required.acks",
        "linger.ms",
        "queue.buffering.max.ms",
        "batch.size",
        "batch.num.messages",
        "compression.type",
        "compression.codec",
        "enable.idempotence",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "retries",
        "message.send.max.retries",
        "transactional.id",
        "transaction.timeout.ms",
        "partitioner",
        "sticky.partitioning.linger.ms",
    ]
)
_SERVICE_VARIABLES = {"CAPI_KAFKA_BOOTSTRAP_SERVERS"}


class Secret:
    """A secret string that prints as `***` in reprs, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Topics:
    """The service's topic names (each configurable)."""

    triggered: str = "conversions.triggered"
    contacts: str = "contacts"
    referrals: str = "ad-referrals"
    connections: str = "meta-connections"
    results: str = "conversions.results"
    dlq: str = "conversions.dlq"
    retry: str = "conversions.retry"
    signals: str = "conversions.signals"

    @classmethod
    def from_env(cls, reader: EnvReader) -> Topics:
        defaults = cls()
        return cls(
            **{
                name: reader.text(f"CAPI_TOPIC_{name.upper()}", getattr(defaults, name))
                for name in cls.__slots__
            }
        )

    def as_env(self) -> dict[str, str]:
        """The `CAPI_TOPIC_*` variables naming these topics (for a process to start)."""
        return {f"CAPI_TOPIC_{name.upper()}": getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the service, read once from the environment at the entry point."""

    bootstrap_servers: str = "localhost:9092"
    kafka: Mapping[str, str] = field(default_factory=dict)
    group_id: str = "capi-consumer"
    topics: Topics = field(default_factory=Topics)
    schema_registry_url: str | None = None
    # `run` looks the result schema up; registering needs write rights registries rarely grant
    schema_registry_auto_register: bool = False
    # the file in the credentials folder holding `user:password` for the registry, if any
    schema_registry_credentials: str = "schema-registry"
    graph_url: str = "https://graph.facebook.com"
    graph_api_version: str = DEFAULT_GRAPH_VERSION
    credentials_dir: Path = Path("/var/run/secrets/capi")
    metrics_port: int = 9464
    state_dir: Path = Path("./state")
    batch_size: int = MAX_BATCH_SIZE
    batch_linger_ms: int = 50
    max_in_flight_requests: int = 8
    request_timeout_s: float = 10.0
    # a failing batch is retried in place this long, then parked in the retry topic
    retry_inline_s: float = 30.0
    # an event still not taken this long after its first try is FAILED/RETRIES_EXHAUSTED;
    # by default Meta's own age limit ends it first (FAILED/EVENT_TOO_OLD)
    retry_deadline_s: float = 7 * 24 * 3600
    # the waits of a parked event before its next tries (then the last one, again and again)
    park_delays_s: tuple[float, ...] = PARKING_DELAYS_S
    throttle_backoff_s: float = 60.0
    partner_agent: str | None = "capi-consumer"
    restricted_countries: frozenset[str] = DEFAULT_RESTRICTED_COUNTRIES
    default_phone_region: str | None = None
    attribution_window_s: int = 7 * 24 * 3600
    log_level: str = "INFO"
    log_format: str = "text"
    instance_id: str = field(default_factory=socket.gethostname)
    commit_interval_ms: int = 50
    drain_timeout_s: float = 30.0
    max_pending_events: int = 50_000
    max_pending_bytes: int = 128 * 1024 * 1024
    # the state store's cap (0: the volume's size) and the parked events' share of it
    state_max_bytes: int = 0
    max_parked_bytes: int = 2 * 1024**3
    workers: int = 1
    # group.instance.id = CAPI_INSTANCE_ID: a restarted instance gets its partitions back
    # without a rebalance, on brokers that implement static membership (KIP-345)
    static_membership: bool = False
    # how often the owner of input partition 0 reads the signals topic for the signal-health
    # gauges (0: never), and how many dataset events they show one by one
    signal_health_interval_s: int = 300
    signal_health_series: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, check_dirs: bool = True) -> Settings:
        """Settings from `env` (default `os.environ`), validated."""
        env = os.environ if env is None else env
        reader = EnvReader(env)
        defaults = cls()
        topics = Topics.from_env(reader)
        settings = cls(
            bootstrap_servers=reader.text(
                "CAPI_KAFKA_BOOTSTRAP_SERVERS", defaults.bootstrap_servers
            ),
            kafka=_kafka_passthrough(env),
            group_id=reader.text("CAPI_GROUP_ID", defaults.group_id),
            topics=topics,
            schema_registry_url=reader.url("CAPI_SCHEMA_REGISTRY_URL", None),
            schema_registry_auto_register=reader.flag(
                "CAPI_SCHEMA_REGISTRY_AUTO_REGISTER", defaults.schema_registry_auto_register
            ),
            schema_registry_credentials=reader.text(
                "CAPI_SCHEMA_REGISTRY_CREDENTIALS", defaults.schema_registry_credentials
            ),
            graph_url=reader.url("CAPI_GRAPH_URL", defaults.graph_url) or defaults.graph_url,
            graph_api_version=reader.graph_version(
                "CAPI_GRAPH_API_VERSION", DEFAULT_GRAPH_VERSION, SUPPORTED_GRAPH_VERSIONS
            ),
            credentials_dir=Path(
                reader.text("CAPI_CREDENTIALS_DIR", str(defaults.credentials_dir))
            ),
            metrics_port=reader.integer("CAPI_METRICS_PORT", defaults.metrics_port, 0, 65535),
            state_dir=Path(reader.text("CAPI_STATE_DIR", str(defaults.state_dir))),
            batch_size=reader.integer("CAPI_BATCH_SIZE", defaults.batch_size, 1, MAX_BATCH_SIZE),
            batch_linger_ms=reader.integer(
                "CAPI_BATCH_LINGER_MS", defaults.batch_linger_ms, 0, 60_000
            ),
            max_in_flight_requests=reader.integer(
                "CAPI_MAX_IN_FLIGHT_REQUESTS", defaults.max_in_flight_requests, 1, 64
            ),
            request_timeout_s=reader.number(
                "CAPI_REQUEST_TIMEOUT_S", defaults.request_timeout_s, 0.1, 300
            ),
            retry_inline_s=reader.number("CAPI_RETRY_INLINE_S", defaults.retry_inline_s, 0, 3600),
            retry_deadline_s=reader.number(
                "CAPI_RETRY_DEADLINE_S", defaults.retry_deadline_s, 0, 7 * 24 * 3600
            ),
            park_delays_s=reader.numbers("CAPI_PARK_DELAYS_S", defaults.park_delays_s, 1, 86400),
            throttle_backoff_s=reader.number(
                "CAPI_THROTTLE_BACKOFF_S", defaults.throttle_backoff_s, 0, 3600
            ),
            partner_agent=reader.optional_text("CAPI_PARTNER_AGENT", defaults.partner_agent),
            restricted_countries=reader.countries(
                "CAPI_RESTRICTED_COUNTRIES", defaults.restricted_countries
            ),
            default_phone_region=reader.region("CAPI_DEFAULT_PHONE_REGION"),
            attribution_window_s=reader.integer(
                "CAPI_ATTRIBUTION_WINDOW_S", defaults.attribution_window_s, 0, 90 * 24 * 3600
            ),
            log_level=reader.choice(
                "CAPI_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            log_format=reader.choice("CAPI_LOG_FORMAT", "TEXT", ("TEXT", "JSON")).lower(),
            instance_id=reader.text("CAPI_INSTANCE_ID", defaults.instance_id),
            commit_interval_ms=reader.integer(
                "CAPI_COMMIT_INTERVAL_MS", defaults.commit_interval_ms, 10, 60_000
            ),
            drain_timeout_s=reader.number(
                "CAPI_DRAIN_TIMEOUT_S", defaults.drain_timeout_s, 0, 3600
            ),
            max_pending_events=reader.integer(
                "CAPI_MAX_PENDING_EVENTS", defaults.max_pending_events, 1000, 10_000_000
            ),
            max_pending_bytes=reader.integer(
                "CAPI_MAX_PENDING_BYTES", defaults.max_pending_bytes, 2**20, 2**34
            ),
            state_max_bytes=reader.integer(
                "CAPI_STATE_MAX_BYTES", defaults.state_max_bytes, 0, 2**50
            ),
            max_parked_bytes=reader.integer(
                "CAPI_MAX_PARKED_BYTES", defaults.max_parked_bytes, 2**20, 2**50
            ),
            workers=reader.integer("CAPI_WORKERS", defaults.workers, 1, 64),
            static_membership=reader.flag("CAPI_STATIC_MEMBERSHIP", defaults.static_membership),
            signal_health_interval_s=reader.integer(
                "CAPI_SIGNAL_HEALTH_INTERVAL_S", defaults.signal_health_interval_s, 0, 86400
            ),
            signal_health_series=reader.integer(
                "CAPI_SIGNAL_HEALTH_SERIES", defaults.signal_health_series, 0, 1000
            ),
        )
        if not https_or_loopback(settings.graph_url):
            raise ConfigError(
                "CAPI_GRAPH_URL",
                "must be https (plain http only to a loopback address, for the sandbox): "
                "access tokens travel in the request body",
            )
        if check_dirs:
            check_readable_dir("CAPI_CREDENTIALS_DIR", settings.credentials_dir)
        if reader.flag("CAPI_UNKNOWN_VARIABLES_ALLOWED", default=False):
            return settings
        _refuse_unknown_variables(reader)
        _refuse_unknown_kafka_properties(settings, reader.asked)
        return settings

    def kafka_config(self, role: Literal["consumer", "producer", "admin"]) -> dict[str, str]:
        """librdkafka settings for one kind of client: the passthrough settings that apply."""
        skip = {
            "consumer": _PRODUCER_ONLY,
            "producer": _CONSUMER_ONLY,
            "admin": _PRODUCER_ONLY | _CONSUMER_ONLY,
        }[role]
        passthrough = {k: v for k, v in self.kafka.items() if k not in skip}
        return {"bootstrap.servers": self.bootstrap_servers, **passthrough}


# what the project's own test tooling reads (never the service): allowed beside the settings
_TEST_TOOLING_PREFIX = "CAPI_TEST_"


def _refuse_unknown_variables(reader: EnvReader) -> None:
    """A `CAPI_*` variable no setting reads is a typo until shown otherwise: the first one is
    a `ConfigError` naming it and the closest known name. `CAPI_KAFKA_*` are librdkafka's
    (`_refuse_unknown_kafka_properties`)."""
    besides = frozenset({_KAFKA_PREFIX, _TEST_TOOLING_PREFIX})
    for name in reader.unknown("CAPI_", besides=besides):
        raise ConfigError(name, f"no such setting{_did_you_mean(name, reader.asked)}")


def _refuse_unknown_kafka_properties(settings: Settings, known: set[str]) -> None:
    """Each `CAPI_KAFKA_<SETTING>` set against librdkafka's own property list: a client of each
    role is made (not connected) with them, and the first property it has no such name for is
    a `ConfigError` naming the variable and the closest known name."""
    if not settings.kafka:
        return
    from confluent_kafka import Consumer, KafkaException, Producer

    roles: list[tuple[Literal["producer", "consumer"], Any]] = [
        ("producer", Producer),
        ("consumer", Consumer),
    ]
    for role, make in roles:
        config = {k: v for k, v in settings.kafka_config(role).items() if k != "bootstrap.servers"}
        config |= {"group.id": settings.group_id} if role == "consumer" else {}
        try:
            make({**config, "log_level": "0"})
        except KafkaException as exc:
            refused = _NO_SUCH_PROPERTY.search(str(exc.args[0].str()))
            if refused is None:
                continue  # a value the client itself says more of, when it starts
            name = _KAFKA_PREFIX + refused[1].upper().replace(".", "_")
            candidates = known | {_KAFKA_PREFIX + p.upper().replace(".", "_") for p in _PROPERTIES}
            raise ConfigError(
                name, f"librdkafka has no setting {refused[1]}{_did_you_mean(name, candidates)}"
            ) from None


_NO_SUCH_PROPERTY = re.compile(r'No such configuration property: "([^"]+)"')
# librdkafka's settings people set most, for suggestions (the check itself asks librdkafka)
_PROPERTIES = (
    _CONSUMER_ONLY
    | _PRODUCER_ONLY
    | frozenset(
        [
            "bootstrap.servers",
            "client.id",
            "security.protocol",
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
            "sasl.oauthbearer.method",
            "sasl.oauthbearer.client.id",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.token.endpoint.url",
            "sasl.oauthbearer.scope",
            "ssl.ca.location",
            "ssl.certificate.location",
            "ssl.key.location",
            "ssl.key.password",
            "ssl.endpoint.identification.algorithm",
            "enable.ssl.certificate.verification",
            "socket.timeout.ms",
            "socket.keepalive.enable",
            "connections.max.idle.ms",
            "metadata.max.age.ms",
            "topic.metadata.refresh.interval.ms",
            "reconnect.backoff.ms",
            "reconnect.backoff.max.ms",
            "retry.backoff.ms",
            "statistics.interval.ms",
            "broker.address.family",
            "client.dns.lookup",
            "debug",
            "log_level",
        ]
    )
)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def _kafka_passthrough(env: Mapping[str, str]) -> dict[str, str]:
    """`CAPI_KAFKA_SECURITY_PROTOCOL=SASL_SSL` -> `{"security.protocol": "SASL_SSL"}`."""
    return {
        name[len(_KAFKA_PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(_KAFKA_PREFIX) and name not in _SERVICE_VARIABLES
    }
