"""What a signed-in caller may do: every method of the core's services that
the policy would allow them now, decided by the same pure `evaluate` over the
same rule index the chain's policy layer uses (WhoAmI). The console hides
what is not listed; the chain still decides every call itself."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import descriptor_pool

from vivified.core.chain import Principal
from vivified.core.policy import PolicyInput, RuleIndex, evaluate


def service_methods(services: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(service, `/service/Method`) for every method of `services`, whose
    descriptors the generated modules registered in the default pool."""
    pool = descriptor_pool.Default()
    pairs: list[tuple[str, str]] = []
    for name in services:
        service = pool.FindServiceByName(name)
        pairs.extend((name, f"/{name}/{method.name}") for method in service.methods)
    return tuple(pairs)


class Permissions:
    """Evaluates the current rule index for each served method."""

    def __init__(self, index: Callable[[], RuleIndex], services: tuple[str, ...]) -> None:
        self._index = index
        self._methods = service_methods(services)

    def allowed(self, principal: Principal, traits: frozenset[str]) -> tuple[str, ...]:
        index = self._index()
        return tuple(
            sorted(
                method
                for service, method in self._methods
                if evaluate(index, PolicyInput(principal.kind, principal.id, traits, service, method)).allowed
            )
        )
