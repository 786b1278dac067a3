"""Reference plugins shipped with Vivified.

Each `vivified.plugins.<name>` package holds a `manifest.yaml` (what the
operator approves), the plugin's servicer classes and a `__main__` that runs
them with `vivified.sdk.run`; `vivified up` starts every such package. Plugins
import only generated contracts and the SDK, never the core.
"""
