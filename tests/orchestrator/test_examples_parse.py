"""Every `orch ...` example the README and the commands' --help show parses as written: a renamed or
removed option, a value outside an option's choices or an unknown command in an example fails here,
not in front of a user who copied it. Parsing only (click's own parser and types, no command runs):
what the examples do when run is what the other tests are for."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from orchestrator.cli import main as cli

README = Path(__file__).resolve().parents[2] / "README.md"
# an example line: indented (a code block or a --help "Examples:" block), maybe after a "$ " prompt
EXAMPLE = re.compile(r"^\s+(?:\$ )?(orch\s.*)$")
SHELL_ENDS = {">", ">>", "2>&1", "&", "|", "&&", ";"}  # what follows is the shell's, not orch's
DIAGRAM = re.compile(r"──|\s/\s")  # the README's diagram of a job's life names commands, as prose


def examples(text: str) -> list[str]:
    """The example commands in `text`, with their continuation lines joined."""
    found: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        match = EXAMPLE.match(line)
        if not match or DIAGRAM.search(line):
            continue
        command = match.group(1)
        while command.split("#")[0].rstrip().endswith("\\"):
            command = command.split("#")[0].rstrip()[:-1] + " " + next(lines, "").strip()
        found.append(command)
    return found


def argv(command: str) -> list[str]:
    words = shlex.split(command, comments=True)[1:]  # without "orch"
    end = next((i for i, word in enumerate(words) if word in SHELL_ENDS), len(words))
    return words[:end]


def parse(args: list[str]) -> click.Context:
    """click's parse of `orch ARGS` down to the leaf command, as `orch` would parse it, without
    invoking anything: options, their types and choices, the commands' names."""
    command: click.Command = cli
    name, ctx = "orch", None
    while True:
        ctx = command.make_context(name, args, parent=ctx)
        if not isinstance(command, click.Group):
            return ctx
        rest = [*ctx._protected_args, *ctx.args]  # click 8.2+: the subcommand and its arguments
        sub_name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and sub_name is not None, rest
        command, name = sub, sub_name


def help_texts(command: click.Command, path: str = "orch") -> list[tuple[str, str]]:
    texts = [(path, command.help or "")]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            texts += help_texts(sub, f"{path} {name}")
    return texts


ALL = [("README.md", example) for example in examples(README.read_text())] + [
    (f"{path} --help", example) for path, text in help_texts(cli) for example in examples(text)]


def test_the_examples_are_found() -> None:
    """The extraction itself: a change to the README's layout that hid its examples from the test
    below would pass it with nothing checked."""
    readme = [example for source, example in ALL if source == "README.md"]
    helps = {source for source, _ in ALL if source != "README.md"}
    assert len(readme) >= 20, readme
    assert any(" \\" not in example and "--model resnet50" in example and "--groups" in example
               for example in readme), "a continued line was not joined"
    assert {"orch --help", "orch submit train --help", "orch report --help", "orch worker --help"} <= helps


@pytest.mark.parametrize(("source", "example"), ALL, ids=[f"{s}: {e[:60]}" for s, e in ALL])
def test_an_example_parses(source: str, example: str) -> None:
    try:
        parse(argv(example))
    except click.exceptions.Exit:  # an eager option such as --version: parsed, and it would exit 0
        pass
    except click.BadParameter as exc:  # a file the example names that this machine lacks: not its syntax
        if not (isinstance(getattr(exc.param, "type", None), click.Path) and "does not exist" in exc.message):
            pytest.fail(f"{source}: `{example}` does not parse: {exc.format_message()}")
    except click.ClickException as exc:
        pytest.fail(f"{source}: `{example}` does not parse: {exc.format_message()}")


def test_a_broken_example_fails_to_parse() -> None:
    """The check can fail: an option that does not exist, a value outside the choices."""
    for broken in ("orch submit train --modle resnet18", "orch report --chart pie",
                   "orch status --study"):
        with pytest.raises(click.ClickException):
            parse(argv(broken))
