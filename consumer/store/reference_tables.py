"""The three reference tables of docs/contract.md, decoded from their compacted topics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from consumer.events.records import AdReferral, Contact, MetaConnection
from consumer.kafka.codec import AvroCodec
from consumer.settings import Topics
from consumer.store.table_reader import Table

__all__ = ["Lookups", "ReferenceTables", "record_key"]

V_co = TypeVar("V_co", covariant=True)


class _Lookup(Protocol[V_co]):
    def get(self, key: str) -> V_co | None: ...

    def prefetch(self, keys: Iterable[str]) -> None:
        """Ahead of `get`: look many keys up at once (what `get` would have found)."""


class Lookups(Protocol):
    """What triage reads of the reference tables: a record by key, the keys of a batch
    prefetched first (tests pass dicts)."""

    @property
    def connections(self) -> _Lookup[MetaConnection]: ...

    @property
    def contacts(self) -> _Lookup[Contact]: ...

    @property
    def referrals(self) -> _Lookup[AdReferral]: ...


@dataclass(frozen=True, slots=True)
class ReferenceTables:
    """The three tables a trigger is joined with: connections, contacts, referrals."""

    connections: Table[MetaConnection]
    contacts: Table[Contact]
    referrals: Table[AdReferral]

    @classmethod
    def for_topics(cls, codec: AvroCodec, topics: Topics) -> ReferenceTables:
        return cls(
            connections=Table(
                "connections",
                topics.connections,
                lambda b: codec.decode(b, "MetaConnection"),
                MetaConnection.from_avro,
                cache_size=10_000,
            ),
            # hot contacts and referrals stay decoded in memory (bounded; updates evict them)
            contacts=Table(
                "contacts",
                topics.contacts,
                lambda b: codec.decode(b, "Contact"),
                Contact.from_avro,
                cache_size=20_000,
            ),
            referrals=Table(
                "referrals",
                topics.referrals,
                lambda b: codec.decode(b, "AdReferral"),
                AdReferral.from_avro,
                cache_size=20_000,
            ),
        )

    def all(self) -> list[Table[Any]]:
        return [self.connections, self.contacts, self.referrals]


def record_key(schema: str, record: dict[str, Any]) -> str:
    """The key a table's record is produced under (docs/contract.md): `connection_id`,
    `contact_id`, or `<contact_id>:<channel>` for a referral."""
    if schema == "MetaConnection":
        return str(record["connection_id"])
    if schema == "Contact":
        return str(record["contact_id"])
    return f"{record['contact_id']}:{record['channel']}"
