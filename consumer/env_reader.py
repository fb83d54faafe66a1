"""Reading the environment: each `CAPI_*` variable parsed and checked, a bad value a
`ConfigError` that names the variable."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from consumer.errors import ConfigError

__all__ = ["EnvReader", "check_readable_dir", "https_or_loopback"]


class EnvReader:
    """Typed values of environment variables; `asked` keeps every name read, so that what is
    left of a prefix is known to be no setting (`unknown`)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._given = env
        self.asked: set[str] = set()

    def raw(self, name: str) -> str | None:
        """The variable as it is, None when unset."""
        self.asked.add(name)
        return self._given.get(name)

    def _or(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional_text(self, name: str, default: str | None) -> str | None:
        """The text, `default` when unset, None when set empty (an empty value turns it off)."""
        return self._or(name, default or "").strip() or None

    def unknown(self, prefix: str, *, besides: frozenset[str] = frozenset()) -> list[str]:
        """The variables of `prefix` that nothing has read, but those starting with one of
        `besides`."""
        return sorted(
            name
            for name in self._given
            if name.startswith(prefix)
            and name not in self.asked
            and not any(name.startswith(b) for b in besides)
        )

    def text(self, name: str, default: str) -> str:
        value = self._or(name, default).strip()
        if not value:
            raise ConfigError(name, "must not be empty")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.raw(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(name, f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ConfigError(name, f"{value} is out of range [{low}, {high}]")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.raw(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(name, f"{raw!r} is not a number") from None
        if not low <= value <= high:
            raise ConfigError(name, f"{value} is out of range [{low}, {high}]")
        return value

    def numbers(
        self, name: str, default: tuple[float, ...], low: float, high: float
    ) -> tuple[float, ...]:
        """A comma-separated list of numbers, each in [low, high], growing or level."""
        raw = self.raw(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            values = tuple(float(part) for part in raw.split(","))
        except ValueError:
            raise ConfigError(name, f"{raw!r} is not a comma-separated list of numbers") from None
        if any(not low <= v <= high for v in values):
            raise ConfigError(name, f"every value must be within [{low}, {high}]")
        if list(values) != sorted(values):
            raise ConfigError(name, "the delays must not shrink")
        return values

    def url(self, name: str, default: str | None) -> str | None:
        raw = self.raw(name)
        if raw is None or raw.strip() == "":
            return default
        value = raw.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(name, f"{value!r} is not an http(s) URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(name, "must not carry credentials, a query or a fragment")
        return value

    def graph_version(self, name: str, default: str, supported: tuple[str, ...]) -> str:
        value = self._or(name, default).strip()
        if not re.fullmatch(r"v\d+\.\d+", value):
            raise ConfigError(name, f"{value!r} is not a Graph API version like {default}")
        if value not in supported:
            raise ConfigError(name, f"{value} is not a supported version ({', '.join(supported)})")
        return value

    def countries(self, name: str, default: frozenset[str]) -> frozenset[str]:
        raw = self.raw(name)
        if raw is None:
            return default
        codes = {c.strip().upper() for c in raw.replace(";", ",").split(",") if c.strip()}
        iso = _iso_countries()
        bad = sorted(c for c in codes if c not in iso)
        if bad:
            raise ConfigError(name, f"not ISO 3166-1 alpha-2 codes: {', '.join(bad)}")
        return frozenset(codes)

    def region(self, name: str) -> str | None:
        raw = self._or(name, "").strip().upper()
        if not raw:
            return None
        import phonenumbers

        if raw not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(name, f"{raw!r} is not a country (ISO 3166-1 alpha-2) with phones")
        return raw

    def flag(self, name: str, default: bool) -> bool:
        """`true` or `false`, in any case."""
        return self.choice(name, "TRUE" if default else "FALSE", ("TRUE", "FALSE")) == "TRUE"

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        given = self._or(name, default).strip()
        value = given.upper()
        if value not in choices:
            options = ", ".join(c.lower() for c in choices)
            raise ConfigError(name, f"{given!r} is not one of {options}")
        return value


def check_readable_dir(name: str, path: Path) -> None:
    if not path.is_dir():
        raise ConfigError(name, f"{path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(name, f"{path} is not readable")


def https_or_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cache
def _iso_countries() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries)
