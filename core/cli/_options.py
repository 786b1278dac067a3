"""Options accepted anywhere on the command line.

argparse binds an option to the parser that declares it, so an option of a
command group (`vivified audit --data-dir X verify`) would be refused after
the verb (`vivified audit verify --data-dir X`: "unrecognized arguments").
`spread_options` copies every option a parser with verbs declares onto each
parser below it, so the option is accepted, and listed in `--help`, before
or after any verb. The copies and the original default to "not given"
(`argparse.SUPPRESS`), so a verb that does not see the option never resets
the value given before it; the group's defaults are set on the group parser.
A verb that declares the same option itself keeps its own.

Command modules only declare their options on the parser they belong to; a
new subcommand needs nothing here."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator

_NOT_SPREAD = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def _verbs(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from dict.fromkeys(action.choices.values())  # aliases name a parser once


def _takes_the_rest(parser: argparse.ArgumentParser) -> bool:
    """A parser whose positional takes every remaining argument (it hands them on)."""
    return any(a.nargs == argparse.REMAINDER for a in parser._actions)


def spread_options(parser: argparse.ArgumentParser) -> None:
    """Make each option of `parser` and of every group below it valid on all the parsers below."""
    _spread(parser, [])


def _spread(parser: argparse.ArgumentParser, inherited: list[argparse.Action]) -> None:
    copies = set()
    for action in inherited:
        if not any(s in parser._option_string_actions for s in action.option_strings):
            added = copy.copy(action)
            added.required = False  # given before the verb is as good as after it
            parser._add_action(added)
            copies.add(id(added))
    verbs = list(_verbs(parser))
    if not verbs:
        return
    own = [a for a in parser._actions if a.option_strings and not isinstance(a, _NOT_SPREAD) and id(a) not in copies]
    parser.set_defaults(**{a.dest: a.default for a in own if a.default is not argparse.SUPPRESS})
    for action in own:
        action.default = argparse.SUPPRESS
    for verb in verbs:
        if not _takes_the_rest(verb):
            _spread(verb, [*inherited, *own])
