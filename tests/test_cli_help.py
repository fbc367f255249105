"""Every command and subcommand explains itself; `prefsum --help` imports no heavy library."""

import argparse
import subprocess
import sys

import pytest

from prefsum.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(build_parser()))


def test_the_command_groups_exist():
    top = {c[0] for c, _ in COMMANDS}
    assert {"data", "train", "label", "export", "serve", "eval", "pipeline"} <= top


@pytest.mark.parametrize("path", [c for c, _ in COMMANDS], ids=" ".join)
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: prefsum " + " ".join(path))
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 5, f"`prefsum {' '.join(path)} --help` says too little: {description!r}"


def test_help_is_instant_no_torch_import():
    code = "import sys; from prefsum.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
