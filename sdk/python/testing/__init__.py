"""Test a plugin without a deployment.

`LocalCore` runs a real `vivified core` process (temporary data dir, embedded
stores, free loopback ports, real mTLS and interceptor chain), approves and
runs the plugin under test in this process, and hands back a client that
calls it through the core and publishes events to it (see `_local_core`).

For tests of the SDK itself there is also a throwaway CA and an in-process
fake core:

`FakeCore` speaks the registry protocol over real TLS on loopback, signs the
plugin's CSR with a `LocalCA`, calls the plugin's `Init` and health check with
the core's certificate like the real core, and records every call. The SDK may
not import the core itself (imports flow `gen` ← `sdk` ← `plugins`), so plugin
authors who want the real broker run `vivified core` as a process instead.

Example (pytest with pytest-asyncio)::

    from vivified.sdk import PluginRuntime
    from vivified.sdk.testing import FakeCore, LocalCA

    async def test_my_plugin(tmp_path):
        async with FakeCore(LocalCA()) as core:
            runtime = PluginRuntime([MyPlugin()], core.settings(tmp_path, Path("manifest.yaml")))
            await runtime.start()
            try:
                await asyncio.wait_for(core.initialised.wait(), 10)
                assert core.init_results == [True]
                async with core.plugin_channel(runtime.endpoint, runtime.plugin_id) as channel:
                    ...  # call MyPlugin through real mTLS, as the core
            finally:
                await runtime.stop()
"""

from vivified.sdk.testing._ca import Leaf, LocalCA, key_usage
from vivified.sdk.testing._fake_core import FakeCore, Refusal
from vivified.sdk.testing._local_core import LocalCore, LocalCoreOptions, LocalPlugin, mirror_manifest

__all__ = [
    "FakeCore",
    "Leaf",
    "LocalCA",
    "LocalCore",
    "LocalCoreOptions",
    "LocalPlugin",
    "Refusal",
    "key_usage",
    "mirror_manifest",
]
