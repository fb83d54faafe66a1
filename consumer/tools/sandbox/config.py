"""What the sandbox knows of Meta's side: which tokens it accepts, for which datasets, and which
assets are linked or in a restricted region."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SandboxConfig", "TokenGrant"]


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """An access token the sandbox accepts: for which datasets, with which app secret."""

    datasets: frozenset[str] | None = None  # None: any dataset
    app_secret: str | None = None


@dataclass(slots=True)
class SandboxConfig:
    """What the sandbox knows of Meta's side: tokens, linked assets, restricted assets."""

    tokens: dict[str, TokenGrant] = field(default_factory=dict)
    restricted_assets: set[str] = field(default_factory=set)
    # dataset -> asset ids linked to it; datasets not listed accept any asset
    linked_assets: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxConfig:
        tokens = {}
        for token, grant in data.get("tokens", {}).items():
            datasets = grant.get("datasets")
            tokens[token] = TokenGrant(
                datasets=None if datasets in (None, "*") else frozenset(datasets),
                app_secret=grant.get("app_secret"),
            )
        return cls(
            tokens=tokens,
            restricted_assets=set(data.get("restricted_assets", ())),
            linked_assets={k: frozenset(v) for k, v in data.get("linked_assets", {}).items()},
        )
