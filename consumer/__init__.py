"""capi-consumer: conversions from business-messaging conversations to Meta's Conversions API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
