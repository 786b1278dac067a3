"""The error of settings the core cannot accept."""

from __future__ import annotations


class SettingsError(Exception):
    """A flag, variable or config file entry the core cannot accept; the message says which."""
