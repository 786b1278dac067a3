"""The error of settings the core cannot accept (defined with the settings table in the core)."""

from __future__ import annotations

from vivified.core.settings import SettingsError

__all__ = ["SettingsError"]
