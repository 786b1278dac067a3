"""Every option a command group declares is accepted by each verb below it,
and gives the same parsed command before or after the verb (the subprocess
test of the real `vivified` is test_cli_options_e2e)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from vivified.core.cli import build_parser


def _verbs(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [p for a in parser._actions if isinstance(a, argparse._SubParsersAction) for p in a.choices.values()]


def _below(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for verb in _verbs(parser):
        yield verb
        yield from _below(verb)


def _takes_the_rest(parser: argparse.ArgumentParser) -> bool:
    return any(a.nargs == argparse.REMAINDER for a in parser._actions)


def test_each_group_option_is_accepted_by_every_verb_below_it() -> None:
    groups = [build_parser()]
    groups += [p for p in _below(groups[0]) if _verbs(p)]
    checked = 0
    for group in groups:
        options = [
            s
            for a in group._actions
            if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
            for s in a.option_strings
        ]
        for verb in _below(group):
            if _takes_the_rest(verb):  # `bench` hands everything after it to the benchmark's parser
                continue
            missing = [s for s in options if s not in verb._option_string_actions]
            assert missing == [], f"{verb.prog} refuses {missing}"
            checked += 1
    assert checked > 40


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (["db", "--data-dir", "X", "upgrade"], ["db", "upgrade", "--data-dir", "X"]),
        (["audit", "--database-url", "sqlite:///a.db", "tail"], ["audit", "tail", "--database-url", "sqlite:///a.db"]),
        (["audit", "--data-dir", "X", "verify", "--json"], ["audit", "verify", "--json", "--data-dir", "X"]),
        (
            ["events", "--json", "--core", "h:1", "dlq", "list", "s"],
            ["events", "dlq", "list", "s", "--json", "--core", "h:1"],
        ),
        (["-v", "audit", "verify"], ["audit", "verify", "-v"]),
        (["users", "--data-dir", "X", "roles"], ["users", "roles", "--data-dir", "X"]),
        (["config", "plugin", "--data-dir", "X", "get", "p"], ["config", "plugin", "get", "p", "--data-dir", "X"]),
        (
            ["config", "core", "--core", "h:1", "set", "k", "v", "--reason", "r"],
            ["config", "core", "set", "k", "v", "--reason", "r", "--core", "h:1"],
        ),
    ],
)
def test_an_option_before_or_after_the_verb_parses_the_same(before: list[str], after: list[str]) -> None:
    parser = build_parser()
    assert vars(parser.parse_args(before)) == vars(parser.parse_args(after))


def test_a_group_option_not_given_keeps_its_default_after_a_verb() -> None:
    parsed = vars(build_parser().parse_args(["events", "subscriptions"]))
    assert (parsed["data_dir"], parsed["core"], parsed["json"], parsed["verbose"]) == (None, None, False, False)
