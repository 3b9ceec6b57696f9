"""Every command ``obol-testnet``'s parser offers has something to run, and nothing runs
that the parser does not offer (scripts/testnet_args.py against scripts/testnet.py)."""

from __future__ import annotations

import argparse

from scripts.testnet import COMMANDS
from scripts.testnet_args import build_parser


def parser_commands() -> set[str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_each_command_of_the_parser_runs_a_function_and_no_other_is_defined():
    assert parser_commands() == set(COMMANDS)


def test_a_command_line_names_its_command():
    args = build_parser().parse_args(["--dir", "x", "partition", "0,1", "2"])
    assert args.command == "partition" and args.groups == ["0,1", "2"] and args.dir == "x"
