"""Data classification declared on proto fields: what a message carries, and
redaction of the fields a holder's traits do not cover."""

from vivified.core.classification._redact import classification_of, redact, required_trait

__all__ = ["classification_of", "redact", "required_trait"]
