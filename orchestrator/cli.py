"""Entry point of the `orch` command. Thin: parse, call, print.

Every user error (an OrchError, a bad option) exits 2 with one line and no traceback.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from orchestrator.context import CliState
from orchestrator.options import option_name
from shared.config import redact
from shared.errors import UNAVAILABLE_EXIT, BrokerUnavailable, OrchError, StoreRefused, Unavailable

# command name -> its module in orchestrator.commands (the command is the module's attribute of that
# name). A command's module is imported only when it runs or `orch --help` lists it: `orch status`
# would otherwise build every `orch submit` option from the pydantic specs first (0.1-0.2 s).
COMMANDS: dict[str, str] = {
    "init": "init",
    "submit": "submit",
    "status": "status",
    "report": "report",
    "cancel": "control",
    "retry": "control",
    "delete": "delete",
    "worker": "worker",
    "flower": "worker",
    "models": "models",
    "data": "data",
    "db": "db",
}


class UserError(click.ClickException):
    """A one-line user error; exit code 2 like click's usage errors."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {redact(self.format_message())}", err=True, file=file)


class OrchGroup(click.Group):
    """Turns OrchError into one-line errors: exit 2 for a bad input, exit 3 for a database or broker that
    does not answer (StoreUnavailable, BrokerUnavailable: the store and the senders raise them by type).
    Its commands load on first use (COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"orchestrator.commands.{COMMANDS[cmd_name]}")
            self.add_command(getattr(module, cmd_name))
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            refuse_repeated_options(self, ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
            return super().invoke(ctx)
        except OrchError as exc:
            # a database or broker that did not answer is not the input's fault: a script may try again
            raise UserError(setting_of(ctx, exc) + str(exc),
                            UNAVAILABLE_EXIT if isinstance(exc, Unavailable) else 2) from None
        except click.UsageError as exc:  # one line instead of usage + hint + error
            hint = f" ({see_help(command_names(exc.ctx))})" if exc.ctx else ""
            raise UserError(usage_message(exc) + hint) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


def setting_of(ctx: click.Context, exc: OrchError) -> str:
    """'ORCH_BROKER_URL (redis://host:6379/0): ' before a broker's or a database's error: "broker
    unreachable: Connection refused" named neither the setting to check nor its value (a worker's did)."""
    if not isinstance(exc, (Unavailable, StoreRefused)) or not isinstance(ctx.obj, CliState):
        return ""
    try:
        settings = ctx.obj.settings
    except OrchError:
        return ""
    if isinstance(exc, BrokerUnavailable):
        return f"ORCH_BROKER_URL ({settings.broker_url}): "
    return f"ORCH_DATABASE_URL ({settings.database_url}): "  # UserError.show hides a password


def refuse_repeated_options(group: click.Group, ctx: click.Context, args: list[str]) -> None:
    """An option that takes one value, given twice: click keeps the last silently, so
    `orch submit score --job 6 --job 7` scored job 7 with nothing said. Refused, naming both."""
    command: click.Command = group
    path: list[str] = []
    while isinstance(command, click.Group) and args:
        sub = command.get_command(ctx, args[0])
        if sub is None:
            return  # click's own "no such command" follows
        command, args, path = sub, args[1:], [*path, args[0]]
    single = {name: param for param in command.params
              if isinstance(param, click.Option) and not (param.multiple or param.count or param.is_flag)
              for name in param.opts}
    given: dict[str, list[str]] = {}
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name in single:
            given.setdefault(single[name].opts[-1], []).append(value if eq else next(iter(args[i + 1:i + 2]), ""))
    for name, values in given.items():
        if len(values) > 1:
            raise UserError(f"{name}: given {len(values)} times ({', '.join(values)}); give it once "
                            f"({see_help(path)})")


def command_names(ctx: click.Context) -> list[str]:
    """The subcommands' names down to `ctx` (['data', 'synth']), without the program's: under
    `python -m orchestrator` click names that 'python -m orchestrator'."""
    names: list[str] = []
    while ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return names


def see_help(names: list[str]) -> str:
    """'see orch data synth --help': a command to run as it reads (it read 'see orch -m orchestrator
    worker --help' under `python -m orchestrator`, and 'see orch  --help' at the top)."""
    return f"see {' '.join(['orch', *names, '--help'])}"


def usage_message(exc: click.UsageError) -> str:
    """`--lr: 'fast' is not a number`: a bad value reads like a spec error, naming the option first,
    whether click or a command raised it (one raised with param_hint alone read "Invalid value for --all:")."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        hint = exc.param_hint
        name = (hint if isinstance(hint, str) else " / ".join(hint)) if hint else exc.param and option_name(exc.param)
        if name:
            return f"{name}: {exc.message}"
    return exc.format_message()


@click.group(cls=OrchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="ORCH_HOME", default=None,
              help="Folder for the embedded store, broker and artifacts (default ~/.orch; env ORCH_HOME).")
@click.version_option(package_name="orch", prog_name="orch")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """orch: a job queue for deep-learning experiments.

    \b
    Quick start (embedded mode: nothing to install or start but this package):
      orch data synth data                       # a learnable cat/dog image set at 64 px
      orch worker &                              # one worker on the CPU (or --gpus 0,1)
      orch submit train --data data/train --val data/val --model resnet18 --image-size 64 \\
          --epochs 3 --wait                      # (--image-size: the default is ImageNet's 224)
      orch submit ablation --data data/train --val data/val --model resnet18 --image-size 64 \\
          --norm bn,ln,in --seeds 0,1 --epochs 4 --wait   # the demo's study: minutes on a laptop's CPU
      orch report --study 1                      # mean ± std over seeds
      orch submit score --job 1 --data data/test --out preds.csv --wait

    A project file saves typing: `orch init` in a data folder writes orch.toml (data, val, test,
    image size); commands run there or below take their defaults from the nearest one, then
    `orch submit ablation --groups 1,8,32` is a whole command.

    Cluster mode: set ORCH_BROKER_URL=redis://HOST:6379/0 and
    ORCH_DATABASE_URL=postgresql+psycopg://USER@HOST/DB (an empty database gets the schema on
    first use; `orch db upgrade` upgrades an older one).
    """
    ctx.obj = CliState(home)
    if ctx.invoked_subcommand == "submit":  # a typo in orch.toml blocked every command there, `orch cancel` too
        use_project_file(ctx)


def use_project_file(ctx: click.Context) -> None:
    """The nearest orch.toml upward from the working directory fills the options of `orch submit` not
    given (the only commands it has defaults for)."""
    from orchestrator.options import PROJECT_KEY
    from orchestrator.project import default_maps, find_project, read_project

    path = find_project(Path.cwd())
    if path is not None:
        ctx.default_map = default_maps(read_project(path))
        ctx.meta[PROJECT_KEY] = path
