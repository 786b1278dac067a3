"""deploy/ validated offline: the Kubernetes manifests against the Kubernetes 1.33
schemas (kubernetes-validate, strict), the compose file with the Docker Compose
client, what both promise (non-root, read-only root filesystems, secrets 0400,
probes through grpc.health.v1, who may reach whom), and that every setting they
give the core — variable or flag — is one in the core's settings table, and
every variable they give a plugin is one the SDK reads, so a misspelt setting
fails here rather than in production."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from support.deploy_manifests import (
    DEPLOY,
    K8S_FILES,
    KUBERNETES,
    KUBERNETES_VERSION,
    ROOT,
    Container,
    compose,
    containers,
    kubernetes,
    pod_specs,
)
from vivified.core.cli import build_parser
from vivified.core.settings import SETTINGS
from vivified.sdk import ConfigurationError, PluginSettings

CORE_VARIABLES = {s.env for s in SETTINGS if s.env}
CORE_FLAGS = {s.flag for s in SETTINGS}
# Read by libpq (psycopg) itself: the password file, so no password sits in a URL.
LIBRARY_VARIABLES = {"PGPASSFILE"}


# --- settings the manifests use exist -------------------------------------------------------


def core_problems(container: Container) -> list[str]:
    """What in a core container's environment or command line the core would not accept."""
    problems = []
    for name in container.env:
        if name.startswith("VIVIFIED_") and name not in CORE_VARIABLES:
            problems.append(f"{container.where}: {name} is not a setting of the core")
        elif not name.startswith("VIVIFIED_") and name not in LIBRARY_VARIABLES:
            problems.append(f"{container.where}: unexpected variable {name}")
    for argv in [container.args, *container.probes]:
        if not argv:
            continue
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            problems.append(f"{container.where}: `vivified {' '.join(argv)}` does not parse")
        if argv[0] == "core":
            problems += [
                f"{container.where}: {a} is not a flag in the settings table"
                for a in argv
                if a.startswith("--") and a.split("=")[0] not in CORE_FLAGS
            ]
    return problems


def _plugin_env(container: Container) -> dict[str, str]:
    env = {k: v for k, v in container.env.items() if k.startswith("VIVIFIED_")}
    # Values Kubernetes fills in at run time (secretKeyRef, fieldRef, service links).
    return {k: ("filled-in" if v.startswith("<from") or "$(" in v else v) for k, v in env.items()}


def plugin_problems(container: Container) -> list[str]:
    """A plugin container's VIVIFIED_* variables that the SDK's PluginSettings.from_env does not read:
    dropping a variable that is read changes the settings (or makes them fail)."""
    env = _plugin_env(container)
    if not env:
        return []
    full = _settings_or_error({"VIVIFIED_MANIFEST": "m", "VIVIFIED_JOIN_TOKEN": "t", "VIVIFIED_CA_FILE": "c", **env})
    problems = []
    for name in env:
        changed = {"VIVIFIED_MANIFEST": "m", "VIVIFIED_JOIN_TOKEN": "t", "VIVIFIED_CA_FILE": "c", **env}
        changed[name] = "different-" + changed[name]
        if _settings_or_error(changed) == full:
            problems.append(f"{container.where}: {name} is not read by the plugin SDK")
    return problems


def _settings_or_error(env: dict[str, str]) -> object:
    try:
        return dataclasses.asdict(PluginSettings.from_env(env))
    except ConfigurationError as error:
        return error.message


def test_every_setting_the_manifests_give_the_core_exists() -> None:
    cores = [c for c in containers() if c.role == "core"]
    # The core Deployment and migration Job, compose's two cores and migration, the core image.
    assert len([c for c in cores if c.args or c.env]) >= 6
    assert [p for c in cores for p in core_problems(c)] == []


def test_every_variable_the_manifests_give_a_plugin_is_read_by_the_sdk() -> None:
    plugins = [c for c in containers() if c.role == "plugin"]
    assert len(plugins) >= 7
    assert [p for c in plugins for p in plugin_problems(c)] == []


def test_a_misspelt_setting_is_caught() -> None:
    (core,) = [c for c in containers() if c.where == "kubernetes Deployment/vivified-core core"]
    assert core_problems(core) == []
    misspelt = dataclasses.replace(core, env={**core.env, "VIVIFIED_REDIS_ULR": "redis://x"})
    assert core_problems(misspelt) == [f"{core.where}: VIVIFIED_REDIS_ULR is not a setting of the core"]
    bad_flag = dataclasses.replace(core, args=[*core.args, "--audit-wrters", "shared"])
    assert len(core_problems(bad_flag)) == 2  # argparse refuses it, and it is in no row of the table
    # argparse would take this one as an abbreviation of --audit-writers; the table check does not.
    abbreviated = dataclasses.replace(core, args=[*core.args, "--audit-writer", "shared"])
    assert core_problems(abbreviated) == [f"{core.where}: --audit-writer is not a flag in the settings table"]
    bad_probe = dataclasses.replace(core, probes=[["health", "--adress", "127.0.0.1:7444"]])
    assert core_problems(bad_probe) == [f"{core.where}: `vivified health --adress 127.0.0.1:7444` does not parse"]
    (plugin,) = [c for c in containers() if c.where == "compose example-echo"]
    typo = dataclasses.replace(plugin, env={**plugin.env, "VIVIFIED_ADVERTISE_HOTS": "x"})
    assert plugin_problems(typo) == [f"{plugin.where}: VIVIFIED_ADVERTISE_HOTS is not read by the plugin SDK"]


# --- Kubernetes -----------------------------------------------------------------------------


def _validate(*paths: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubernetes-validate", path=str(ROOT / ".venv" / "bin")) or "kubernetes-validate"
    return subprocess.run([exe, "--strict", "-k", KUBERNETES_VERSION, *paths], capture_output=True, text=True)


def test_kubernetes_manifests_validate_strictly() -> None:
    result = _validate(*(str(KUBERNETES / name) for name in K8S_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(f"against version {KUBERNETES_VERSION.rsplit('.', 1)[0]}") == len(kubernetes())


def test_kustomization_applies_every_manifest_and_generates_from_ignored_files() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(K8S_FILES)
    assert kustomization["namespace"] == "vivified"
    sources = [
        f.split("=", 1)[1]
        for g in kustomization["secretGenerator"] + kustomization["configMapGenerator"]
        for f in g["files"]
    ]
    secret_files = [s for s in sources if s.startswith("secrets/")]
    assert secret_files and all(s.startswith("secrets/") or (KUBERNETES / s).is_file() for s in sources)
    # The key material stays out of git: its directory is ignored.
    ignored = subprocess.run(["git", "check-ignore", "-q", str(KUBERNETES / secret_files[0])], cwd=ROOT)
    assert ignored.returncode == 0, f"{secret_files[0]} is not ignored by git"


def test_strict_validation_refuses_an_unknown_field(tmp_path: Any) -> None:
    broken = tmp_path / "core.yaml"
    broken.write_text(
        (KUBERNETES / "core.yaml").read_text().replace("readOnlyRootFilesystem", "readOnlyRootFilesytem", 1)
    )
    result = _validate(str(broken))
    assert result.returncode != 0 and "readOnlyRootFilesytem" in result.stdout + result.stderr


def _all_containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    docs = kubernetes()
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, spec, _ in pod_specs(docs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for c in _all_containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
                c["resources"]["limits"]
            ), (name, c["name"])


def test_secrets_are_mounted_read_only_with_mode_0400_and_only_where_needed() -> None:
    mounted: dict[str, set[str]] = {}
    for name, spec, labels in pod_specs(kubernetes()):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in _all_containers(spec):
            for mount in c.get("volumeMounts", []):
                volume = volumes.get(mount["name"], {})  # absent: a volumeClaimTemplate
                if "secret" in volume:
                    assert volume["secret"]["defaultMode"] == 0o400, (name, mount)
                    assert mount["readOnly"] is True, (name, mount)
                    mounted.setdefault(volume["secret"]["secretName"], set()).add(labels["app.kubernetes.io/component"])
        # The core's own container reads only the 0400 copies its init container made, never a Secret volume.
    # The core's copies live in memory (never on the node's disk) and are read-only to the core.
    (core,) = [spec for name, spec, _ in pod_specs(kubernetes()) if name == "Deployment/vivified-core"]
    volumes = {v["name"]: v for v in core["volumes"]}
    (main,) = core["containers"]
    for mount in main["volumeMounts"]:
        volume = volumes[mount["name"]]
        assert "secret" not in volume, mount
        if mount["name"] in ("keys", "identity"):
            assert volume["emptyDir"]["medium"] == "Memory" and mount["readOnly"] is True, mount
    assert {m["mountPath"] for m in main["volumeMounts"] if m["name"] == "identity"} == {"/var/lib/vivified/identity"}
    assert mounted["vivified-ca"] == {"core"}  # the CA key: the cores alone
    assert mounted["vivified-identity-keys"] == {"core"}
    assert mounted["vivified-secrets-key"] == {"core"}
    generated = (KUBERNETES / "kustomization.yaml").read_text()
    for secret in [*mounted, "vivified-join-tokens"]:
        assert f"name: {secret}\n" in generated, f"{secret} is not generated by kustomization.yaml"


def test_core_probes_pdb_and_service_links() -> None:
    docs = kubernetes()
    (core,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "vivified-core"]
    assert core["spec"]["replicas"] >= 2
    spec = core["spec"]["template"]["spec"]
    # Service links would inject VIVIFIED_CORE_SERVICE_HOST & co, which the core refuses as unknown settings.
    assert spec["enableServiceLinks"] is False
    (container,) = spec["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:3] == ["/usr/bin/python3", "-m", "vivified.core.probe"], probe
    (pdb,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == core["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] >= 1


# A small evaluator of the NetworkPolicies (podSelector matchLabels, ipBlock, ports), enough
# for the rules deploy/kubernetes uses: a connection is allowed only if an egress rule of a
# policy selecting the source and an ingress rule of a policy selecting the target admit it.
PODS = {
    "core": {"app.kubernetes.io/component": "core"},
    "plugin": {"app.kubernetes.io/component": "plugin", "vivified.io/plugin": "example-echo"},
    "other-plugin": {"app.kubernetes.io/component": "plugin", "vivified.io/plugin": "email-gateway"},
    "postgresql": {"app.kubernetes.io/component": "postgresql"},
    "redis": {"app.kubernetes.io/component": "redis"},
    "migrate": {"app.kubernetes.io/component": "migrate"},
    "envoy": {"app.kubernetes.io/component": "envoy"},
    "stranger": {"app": "something-else"},
}
OUTSIDE = "outside"  # a public address


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict[str, Any], who: str) -> bool:
    if "ipBlock" in peer:
        return who == OUTSIDE and peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    if "namespaceSelector" in peer:
        return False  # kube-system's DNS only
    return who in PODS and _selects(peer["podSelector"], PODS[who])


def _rule_admits(rule: dict[str, Any], key: str, peer: str, port: int) -> bool:
    peers = rule.get(key)
    ports = rule.get("ports")
    return (peers is None or any(_peer_matches(p, peer) for p in peers)) and (
        ports is None or any(p.get("port") == port for p in ports)
    )


def allowed(source: str, target: str, port: int) -> bool:
    policies = [d for d in kubernetes() if d["kind"] == "NetworkPolicy"]

    def side(pod: str, direction: str, key: str, peer: str) -> bool:
        if pod == OUTSIDE:
            return True
        selecting = [
            p
            for p in policies
            if _selects(p["spec"]["podSelector"], PODS[pod]) and direction in p["spec"]["policyTypes"]
        ]
        if not selecting:
            return True
        return any(
            _rule_admits(rule, key, peer, port) for p in selecting for rule in p["spec"].get(direction.lower(), [])
        )

    return side(source, "Egress", "to", target) and side(target, "Ingress", "from", source)


@pytest.mark.parametrize(
    ("source", "target", "port", "expected"),
    [
        ("plugin", "core", 7443, True),
        ("plugin", "core", 7444, True),
        ("plugin", "core", 9464, False),
        ("plugin", "postgresql", 5432, False),
        ("plugin", "redis", 6379, False),
        ("plugin", "other-plugin", 40000, False),
        ("plugin", OUTSIDE, 443, False),
        ("core", "postgresql", 5432, True),
        ("core", "redis", 6379, True),
        ("core", "plugin", 40000, True),
        ("core", OUTSIDE, 443, True),
        ("envoy", "core", 7444, True),
        ("stranger", "core", 7443, False),
        ("stranger", "core", 7444, False),
        (OUTSIDE, "core", 7443, False),
        ("migrate", "postgresql", 5432, True),
        ("migrate", "core", 7443, False),
        ("stranger", "postgresql", 5432, False),
        ("stranger", "redis", 6379, False),
        ("migrate", "redis", 6379, False),
        ("postgresql", OUTSIDE, 443, False),
    ],
)
def test_network_policies(source: str, target: str, port: int, expected: bool) -> None:
    assert allowed(source, target, port) is expected


# --- compose --------------------------------------------------------------------------------


def _compose_client() -> list[str] | None:
    """`docker compose` (the v2 plugin) when it answers, else `docker-compose` (Debian's package,
    which tools/setup.sh installs where the docker client has no compose plugin, as here)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_config_validates() -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed (tools/setup.sh installs docker-compose)")
    result = subprocess.run(
        [*client, "-f", str(DEPLOY / "compose.yaml"), "--profile", "plugins", "config", "-q"],
        capture_output=True,
        text=True,
        cwd=DEPLOY,
    )
    assert result.returncode == 0, result.stderr
    broken = copy.deepcopy(compose())
    broken["services"]["core-1"]["depends_on"]["migrate"]["condition"] = "service_done"
    checked = subprocess.run(
        [*client, "-f", "-", "config", "-q"], input=yaml.safe_dump(broken), capture_output=True, text=True, cwd=DEPLOY
    )
    assert checked.returncode != 0 and "service_done" in checked.stderr, checked.stderr


def test_compose_topology() -> None:
    spec = compose()
    services, networks = spec["services"], spec["networks"]
    cores = sorted(n for n, s in services.items() if s.get("command", [None])[0] == "core")
    assert cores == ["core-1", "core-2"]
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"].startswith("redis:7")
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes" and redis[redis.index("--appendfsync") + 1] == "always"
    # The migration runs once, before the cores.
    assert services["migrate"]["command"][:2] == ["db", "upgrade"] and services["migrate"]["restart"] == "no"
    for core in cores:
        assert services[core]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

    def members(network: str) -> set[str]:
        return {n for n, s in services.items() if network in (s.get("networks") or {})}

    # Only the core network reaches the databases.
    for database in ("postgres", "redis"):
        for network in services[database]["networks"]:
            assert networks[network].get("internal") is True
            assert members(network) == {"postgres", "redis", "migrate", *cores}, network
    plugins = [n for n, s in services.items() if "vivified-plugin" in s.get("image", "")]
    assert sorted(plugins) == ["email-gateway", "example-echo", "user-management"]
    for plugin in plugins:
        (network,) = services[plugin]["networks"]
        # Alone with the cores on an internal network: the cores and nothing else.
        assert networks[network].get("internal") is True, network
        assert members(network) == {plugin, *cores}, network
        for core in cores:
            assert "core" in services[core]["networks"][network]["aliases"]
    for name in ["migrate", *cores, *plugins]:
        service = services[name]
        assert service["read_only"] is True and service["user"] == "10001:10001", name
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"], name


def test_dockerfiles_build_from_the_wheel_as_a_non_root_user_without_a_shell() -> None:
    for name in ("core.Dockerfile", "plugin-base.Dockerfile"):
        text = (DEPLOY / "docker" / name).read_text()
        assert "pip wheel" in text and "/wheels/vivified-*.whl" in text, name
        final = text.rsplit("\nFROM ", 1)[1]
        assert final.startswith("gcr.io/distroless/python3"), name  # no shell, no package manager
        assert "\nUSER 10001:10001" in final and "RUN " not in final, name
