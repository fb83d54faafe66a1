"""A local stand-in for the Graph API's Conversions API endpoint, as strict as Meta.

It is written apart from the service's own payload code (its own lists of event names, keys
and codes, from docs/meta-rules.md) so that it catches the service's mistakes instead of
sharing them.
"""

from consumer.tools.sandbox.config import SandboxConfig, TokenGrant
from consumer.tools.sandbox.rules import ValidationFailure, validate_request
from consumer.tools.sandbox.server import Sandbox

__all__ = ["Sandbox", "SandboxConfig", "TokenGrant", "ValidationFailure", "validate_request"]
