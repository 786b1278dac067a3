"""A benchmark's result: rows for people, ratios for machines."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import grpc


def machine_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


@dataclass
class BenchReport:
    """One scenario's figures. `ratios` holds the docs/performance.md goal keys."""

    scenario: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"scenario": self.scenario, "ratios": self.ratios, "rows": self.rows, "machine": machine_facts()}
        )

    def to_table(self) -> list[str]:
        lines = [f"scenario: {self.scenario}"]
        for row in self.rows:
            lines.append("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
        for key, value in self.ratios.items():
            lines.append(f"  {key}: {value:.3f}")
        return lines
