"""Reading deploy/: the compose file, the Kubernetes manifests and the Dockerfiles, and
what each container would be started with (its command line and environment)."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
K8S_FILES = (
    "namespace.yaml",
    "postgres.yaml",
    "redis.yaml",
    "migrate-job.yaml",
    "core.yaml",
    "plugins.yaml",
    "networkpolicies.yaml",
)


@dataclass
class Container:
    """One container of vivified's images: where it is declared, its argv after the
    entrypoint and its environment."""

    where: str
    image: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    probes: list[list[str]] = field(default_factory=list)

    @property
    def role(self) -> str:
        """`core` for the core image, `plugin` for the plugin base image."""
        return "core" if "vivified-core" in self.image else "plugin" if "vivified-plugin" in self.image else "other"


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def kubernetes() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in K8S_FILES:
        docs += [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]
    return docs


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    """(name, pod spec, pod labels) of every workload."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            template = doc["spec"]["template"]
            yield f"{doc['kind']}/{doc['metadata']['name']}", template["spec"], template["metadata"].get("labels", {})


def _exec(probe: dict[str, Any] | None) -> list[str] | None:
    return list(probe["exec"]["command"]) if probe and "exec" in probe else None


def _after_module(argv: list[str]) -> list[str]:
    """The probe's command line as `vivified` arguments: `python3 -m vivified.core.cli health ...`
    and `python3 -m vivified.core.probe ...` (the same flags) -> `health ...`."""
    if "vivified.core.cli" in argv:
        return argv[argv.index("vivified.core.cli") + 1 :]
    if "vivified.core.probe" in argv:
        return ["health", *argv[argv.index("vivified.core.probe") + 1 :]]
    return []


def containers() -> list[Container]:
    found: list[Container] = []
    for name, spec, _ in pod_specs(kubernetes()):
        for kind in ("initContainers", "containers"):
            for c in spec.get(kind, []):
                env = {
                    e["name"]: str(e.get("value", "<from " + next(iter(e.get("valueFrom", {"?": 0}))) + ">"))
                    for e in c.get("env", [])
                }
                probes = [
                    p for p in (_exec(c.get(k)) for k in ("startupProbe", "readinessProbe", "livenessProbe")) if p
                ]
                args = list(c.get("args", [])) if "command" not in c else []
                found.append(
                    Container(
                        f"kubernetes {name} {c['name']}", c["image"], args, env, [_after_module(p) for p in probes]
                    )
                )
    services = compose()["services"]
    for name, service in services.items():
        command = service.get("command", [])
        health = service.get("healthcheck", {}).get("test", [])
        probes = [_after_module(list(health))] if {"vivified.core.cli", "vivified.core.probe"} & set(health) else []
        found.append(
            Container(
                f"compose {name}",
                service.get("image", ""),
                list(command),
                {k: str(v) for k, v in (service.get("environment") or {}).items()},
                probes,
            )
        )
    for dockerfile in ("core.Dockerfile", "plugin-base.Dockerfile"):
        text = (DEPLOY / "docker" / dockerfile).read_text().replace("\\\n", " ")
        env = dict(re.findall(r"\b(VIVIFIED_[A-Z_]+)=(\S+)", text))
        health = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])", text)
        cmd = re.search(r"^CMD (\[.*\])", text, re.M)
        image = "vivified-core" if dockerfile.startswith("core") else "vivified-plugin-base"
        found.append(
            Container(
                f"deploy/docker/{dockerfile}",
                image,
                yaml.safe_load(cmd.group(1)) if cmd and image == "vivified-core" else [],
                env,
                [_after_module(yaml.safe_load(health.group(1)))] if health else [],
            )
        )
    return found
