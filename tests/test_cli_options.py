"""The CLI is thin and uniform: a flag that several commands take is one definition (same spelling, short form
and help everywhere), and every command is a module-level function that can be imported."""

from __future__ import annotations

import sys
from collections import defaultdict

import typer
import typer.core
import typer.main

from birdbridge.cli.app import app
from cli_fixtures import run

SHARED = ["--device", "--batch-size", "--window", "--hop", "--species-list", "--taxonomy", "--forms", "--templates",
          "--json", "--gallery", "--format", "--rank", "--locale", "--labels-dir", "--lat", "--lon", "--week", "--date",
          "--sf-thresh", "--range-model", "--score", "--min-conf", "--sensitivity", "--min-sim", "--backend",
          "--precision"]


def click_commands(command, path: tuple[str, ...] = ()):
    if hasattr(command, "commands"):  # a group
        for name, sub in command.commands.items():
            yield from click_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def callbacks(typer_app: typer.Typer):
    for info in typer_app.registered_commands:
        yield info.callback
    for group in typer_app.registered_groups:
        yield from callbacks(group.typer_instance)


def test_shared_options_are_defined_once() -> None:
    definitions: dict[str, set] = defaultdict(set)
    users: dict[str, set] = defaultdict(set)
    short: dict[str, set] = defaultdict(set)
    for name, command in click_commands(typer.main.get_command(app)):
        for param in command.params:
            if not isinstance(param, typer.core.TyperOption):
                continue
            for flag in param.opts:
                short[flag].add(tuple(sorted(o for o in param.opts if not o.startswith("--"))))
                if flag in SHARED:
                    definitions[flag].add((tuple(param.opts), param.help))
                    users[flag].add(name)
    for flag in SHARED:
        assert len(definitions[flag]) == 1, (flag, definitions[flag])
    assert len(users["--device"]) >= 8 and len(users["--species-list"]) == 5, users
    assert {"search", "archive search", "archive probe apply"} <= users["--lat"] & users["--locale"] & users["--rank"]
    assert users["--backend"] == users["--precision"] == {"search", "serve", "archive build", "embed audio"}, users
    for flag, abbreviation in (("--model", ("-m",)), ("--teacher", ("-t",)), ("--output", ("-o",))):
        assert short[flag] == {abbreviation}, (flag, short[flag])  # the same short form wherever the flag is


def test_every_command_is_importable() -> None:
    found = list(callbacks(app))
    # models train evaluate experiment calibrate demo index search segments species serve; embed 4, dataset 1,
    # gallery 4; archive 6, probe 2
    assert len(found) == 28
    for callback in found:
        assert "<locals>" not in callback.__qualname__, callback.__qualname__
        assert getattr(sys.modules[callback.__module__], callback.__name__) is callback


def test_usage_errors_are_a_message_not_a_traceback(capsys) -> None:
    """A missing option, a bad value or an unknown command: click's usage message and exit status 2."""
    for argv, expected in ((["search", "x.wav"], "Missing option '--gallery'"),
                           (["search", "--top-k", "0", "-g", ".", "x.wav"], "Invalid value for '--top-k'"),
                           (["no-such-command"], "No such command")):
        result = run(capsys, *argv)
        err = result.stderr
        assert result.returncode == 2, argv
        assert expected in err and "Traceback" not in err, err
