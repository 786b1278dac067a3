"""The error hierarchy written in `vivified.core.errors` is the one the code has:
every exception class the core defines is named there, and each named under
`VivifiedError` is one (and each named outside it is not)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import vivified.core
from vivified.core import errors
from vivified.core.errors import VivifiedError


def _core_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(vivified.core.__path__, "vivified.core."):
        if ".migrations." in module.name or module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == loaded.__name__
                and not name.startswith("_")
            ):
                found[name] = value
    return found


def test_every_core_exception_is_in_the_documented_hierarchy() -> None:
    doc = errors.__doc__ or ""
    inside, outside = doc.split("Outside the RPC path", 1)
    for name, cls in _core_exceptions().items():
        assert name in doc, f"{name} ({cls.__module__}) is not in the hierarchy of vivified.core.errors"
        if issubclass(cls, VivifiedError):
            assert f" {name} " in inside or f"── {name} " in inside, (
                f"{name} is a VivifiedError: list it under the root"
            )
        elif name != "Denied":
            assert f"{name} " in outside.split("Inside the chain only", 1)[0], (
                f"{name} is not a VivifiedError: list it outside"
            )
