"""The Public Suffix List, as the egress allowlist guard needs it.

Names under a public suffix (`co.kr`, `com.sg`, and the private-domain
section too: `github.io`, `fly.dev`, `s3.us-east-1.amazonaws.com`) belong to
unrelated registrants, so a wildcard over one would admit strangers' hosts.
The list is the copy the `publicsuffixlist` package ships (its version is the
list's date); it is read once, on first use, and never fetched at run time.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterable

from publicsuffixlist import PublicSuffixList

_LIST_FILE = "public_suffix_list.dat"


def _rules(lines: Iterable[str]) -> list[str]:
    """The rules of a list file: the first word of each non-comment line."""
    rules = []
    for line in lines:
        words = line.strip().split()
        if words and not words[0].startswith("//"):
            rules.append(words[0].lower())
    return rules


def _ascii(name: str) -> str:
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


class PublicSuffixes:
    """Which names are public suffixes, and which names have one directly below."""

    __slots__ = ("_list", "_parents")

    def __init__(self, lines: Iterable[str]) -> None:
        rules = _rules(lines)
        # ICANN and private sections both; an unknown TLD counts as public.
        self._list = PublicSuffixList(rules, accept_unknown=True, accept_encoded_idn=True, only_icann=False)
        parents: set[str] = set()
        for rule in rules:
            if rule.startswith("!"):
                continue  # an exception names a registrable domain, not a suffix
            _, dot, parent = rule.partition(".")
            if dot:
                parents.add(_ascii(parent))
        self._parents = frozenset(parents)

    def is_public(self, name: str) -> bool:
        """`name` (lower case, ASCII) is itself a public suffix."""
        return bool(self._list.is_public(name))

    def has_public_child(self, name: str) -> bool:
        """Some one-label child of `name` is a public suffix (a rule like
        `s3.amazonaws.com` below `amazonaws.com`, or `*.name`), so a
        one-label wildcard `*.name` would admit a shared suffix as a host."""
        return name in self._parents


@functools.cache
def public_suffixes() -> PublicSuffixes:
    """The shipped list, parsed once (about 40 ms) and then shared read-only."""
    text = importlib.resources.files("publicsuffixlist").joinpath(_LIST_FILE).read_text("utf-8")
    return PublicSuffixes(text.splitlines())
