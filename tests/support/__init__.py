"""Test support: real core processes, operator and raw-plugin clients."""
