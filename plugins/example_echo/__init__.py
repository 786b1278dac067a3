"""Example communication plugin: accepts messages and reports them delivered.

It shows the whole shape of a plugin in a few lines: a class subclassing the
generated `CommunicationPluginServiceServicer`, its manifest, and a
`__main__` that hands it to the SDK. Run it with `python -m
vivified.plugins.example_echo` (the `VIVIFIED_*` variables of
`vivified.sdk.PluginSettings.from_env` must be set; `vivified up` sets them).
"""

from vivified.plugins.example_echo.plugin import EchoCommunicationPlugin

__all__ = ["EchoCommunicationPlugin"]
