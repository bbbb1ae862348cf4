"""The command line's own help is a guide: grouped options, and example lines that parse."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

import pytest

from harness.cli import build_parser


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:  # argparse keeps its subcommands here; there is no public listing
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _example_lines(parser: argparse.ArgumentParser) -> list[str]:
    epilog = parser.epilog or ""
    return [line.strip() for line in epilog.splitlines() if line.strip().startswith("python -m harness ")]


def test_every_command_has_examples_that_parse():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) == 11  # the program, run, plan, status, cancel, report, rescore, reproduce-table, data,
    # synth, check
    for parser in parsers:
        lines = _example_lines(parser)
        assert lines, f"{parser.prog}: no example line in its --help"
        for line in lines:
            args = build_parser().parse_args(shlex.split(line)[3:])  # argparse exits 2 on a bad flag
            assert callable(getattr(args, "func", None)), line


def test_run_groups_its_options_by_purpose():
    out = subprocess.run([sys.executable, "-m", "harness", "run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    titles = ["what to run:", "where it runs:", "Slurm resources per task", "seeds and steps decided as the study runs:",
              "failures and resuming", "the report at the end:", "examples:"]
    positions = [out.stdout.index(title) for title in titles]
    assert positions == sorted(positions)


@pytest.mark.parametrize("command", ["plan", "status", "report", "rescore", "data", "cancel"])
def test_each_command_help_ends_with_examples(command):
    out = subprocess.run([sys.executable, "-m", "harness", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "examples:\n  python -m harness " in out.stdout
