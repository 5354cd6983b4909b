"""`orch worker` (Celery workers, one per GPU) and `orch flower` (Celery's monitor on our broker)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.context import CliState, pass_state
from orchestrator.options import comma_items, queue_names
from shared.config import DEFAULT_QUEUE
from shared.errors import OrchError

FLOWER_AUTH_ENV = "FLOWER_BASIC_AUTH"  # Flower's own variable: user:password[,user:password...]


def worker_command(queues: str, hostname: str, loglevel: str, threads: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "worker", "--queues", queues, "--hostname", hostname, "--loglevel", loglevel]
    return cmd + (["--threads", str(threads)] if threads else [])


def node_name(name: str | None, pid: int | None = None, gpu: str | None = None) -> str:
    """The worker's Celery node name: `name`, else orch-PID@HOST (the pid, kept by execve: two workers
    on one machine named alike were one node to Flower, DuplicateNodenameWarning, and to Celery's remote
    control); with a GPU, PREFIX-gpuN@HOST for each."""
    if gpu is None:
        return name or f"orch-{pid}@{socket.gethostname()}"
    user, _, host = (name or "orch").partition("@")
    return f"{user}-gpu{gpu}@{host or socket.gethostname()}"


def gpu_indices(gpus: str) -> list[str]:
    """`all` or `0,1,...` -> the GPU indices to start one worker each on, each one this machine has
    (no torch: nvidia-smi lists them)."""
    wanted = None
    if gpus.strip() != "all":
        wanted = comma_items("--gpus", gpus, "0,1, or all")
        if not all(g.isascii() and g.isdigit() for g in wanted):
            raise click.BadParameter(f"expected all or GPU indices like 0,1,2; got {gpus!r}", param_hint="--gpus")
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        raise click.BadParameter(f"{gpus}: no NVIDIA GPU found (nvidia-smi did not answer); "
                                 "leave --gpus out to run on the CPU", param_hint="--gpus") from None
    present = [line.strip() for line in out.splitlines() if line.strip()]
    missing = [g for g in wanted or [] if g not in present]
    if missing:
        raise click.BadParameter(f"no GPU {missing[0]} on this machine (it has {','.join(present) or 'none'})",
                                 param_hint="--gpus")
    return wanted or present


def threads_each(threads: int | None, workers: int) -> int:
    """The CPUs of this machine shared out over its worker processes, unless --threads says."""
    return threads or max(1, len(os.sched_getaffinity(0)) // workers)


def worker_env(obj: CliState, gpu: str | None) -> dict[str, str]:
    env = dict(os.environ, ORCH_HOME=str(obj.settings.home))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


@click.command()
@click.option("--queues", default=DEFAULT_QUEUE, show_default=True, callback=queue_names,
              help="Comma-separated queues to take jobs from.")
@click.option("--gpus", help="all, or GPU indices such as 0,1,2,3: one worker process per GPU, pinned by "
                             "CUDA_VISIBLE_DEVICES.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads each job trains with [this machine's CPUs, "
                                                        "shared out over the workers this command starts].")
@click.option("--name", default=None, help="Node name [orch-PID@HOST; with --gpus, orch-gpuN@HOST]: unique per "
                                           "worker, as Celery and Flower need (one in use is refused).")
@click.option("--loglevel", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@pass_state
def worker(obj: CliState, queues: str, gpus: str | None, threads: int | None, name: str | None, loglevel: str) -> None:
    """Run jobs: a Celery worker that runs one job at a time, each in a fresh child process.

    Without --gpus it trains on the GPU if there is one, else on the CPU. A killed worker
    loses nothing: its job goes back to the queue and resumes from its last checkpoint, within
    a heartbeat when another worker runs on the same machine (it sees the process gone), else
    when its lease expires (ORCH_LEASE_TTL). Ctrl-C stops cleanly (the running job is requeued). The worker keeps
    the next job's process started and ready, so jobs follow each other without a start-up wait.

    \b
    Examples:
      orch worker                      # one worker (CPU or the first GPU)
      orch worker --gpus all           # one worker per GPU of this machine
      orch worker --gpus 0,1,2,3       # four workers, one per GPU
      orch worker --threads 1          # a job trains on one CPU thread (e.g. two workers, two cores)
      orch worker --queues big,orch    # also take jobs sent with --queue big
    """
    from shared.config import check_worker_timing

    check_worker_timing(obj.settings)
    if name is not None and not name.strip():  # '' took the default name, as if --name were not given
        raise OrchError("--name: empty; give a node name such as w1@HOST, or leave --name out for orch-PID@HOST")
    indices = gpu_indices(gpus) if gpus is not None else []  # '' is refused there, not read as no --gpus
    _ = obj.store  # create or check the schema once, before any worker races to
    each = threads_each(threads, max(1, len(indices)))
    if name is not None or indices:  # orch-PID@HOST is unique; a name given (or a GPU's) may be taken
        refuse_names_in_use(obj, [node_name(name, os.getpid())] if not indices else [node_name(name, gpu=g) for g in indices])
    if not indices:
        cmd = worker_command(queues, node_name(name, os.getpid()), loglevel, each)
        os.execve(sys.executable, cmd, worker_env(obj, None))
    procs = [subprocess.Popen(worker_command(queues, node_name(name, gpu=g), loglevel, each), env=worker_env(obj, g))
             for g in indices]
    supervise(procs)


def refuse_names_in_use(obj: CliState, names: list[str]) -> None:
    """A worker already running under one of `names` (a second `orch worker --name w1@lab`, or
    `--gpus 0` started twice): Celery and Flower saw one node for two, and a job's history read
    "taken over by sweeper of w1@lab" from w1@lab. Asked over the broker; one that does not answer
    leaves the check to the worker's own start, which says so."""
    from orchestrator.workers import ASK_S
    from shared.broker_errors import broker_boundary
    from shared.errors import BrokerUnavailable

    try:
        with broker_boundary():
            replies = obj.celery.control.ping(destination=names, timeout=ASK_S)
    except BrokerUnavailable:
        return
    taken = sorted({node for reply in replies for node in reply})
    if taken:
        raise OrchError(f"--name: a worker named {', '.join(taken)} is running already; give each worker its own "
                        "name (or none: orch-PID@HOST is unique)")


def supervise(procs: list[subprocess.Popen[bytes]]) -> None:
    """Forward SIGTERM to the per-GPU workers (Ctrl-C reaches them through the terminal) and wait."""
    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, lambda *_: None)  # the children got it too; wait for their warm shutdown
    codes = [proc.wait() for proc in procs]
    raise SystemExit(max(codes, default=0))


FLOWER_INSPECT_TIMEOUT_MS = 5000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _refuse_password_in_argv(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        raise click.BadParameter(f"a password on the command line is visible to every user (ps); put "
                                 f"user:password in {FLOWER_AUTH_ENV} or a file for --basic-auth-file")


@click.command()
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535), help="HTTP port.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--basic-auth-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help=f"A file holding user:password (one or more, comma-separated) for the web UI and API; "
                   f"or set {FLOWER_AUTH_ENV}. Never on the command line, where ps shows it.")
@click.option("--basic-auth", hidden=True, expose_value=False, callback=_refuse_password_in_argv)
@pass_state
def flower(obj: CliState, port: int, address: str, basic_auth_file: Path | None) -> None:
    """Celery's Flower monitor on orch's broker: workers, tasks (orch.train[job id]) and queues.

    The password comes from a file or the environment, never from the command line. Its HTTP API
    (/api/tasks, /api/workers) needs one: without, Flower answers 401 there unless
    FLOWER_UNAUTHENTICATED_API=true is set (the web pages work either way).

    \b
    Examples:
      orch flower                                   # http://127.0.0.1:5555
      FLOWER_BASIC_AUTH=admin:secret orch flower --address 0.0.0.0
      orch flower --port 8080 --basic-auth-file ~/.config/orch/flower-auth
    """
    from orchestrator.submission import require_broker
    from shared.celery_app import make_celery

    if basic_auth_file is not None:
        os.environ[FLOWER_AUTH_ENV] = read_credentials(basic_auth_file)
    elif os.environ.get(FLOWER_AUTH_ENV) and not all(":" in pair for pair in os.environ[FLOWER_AUTH_ENV].split(",")):
        # Flower took it and answered every request 401, the user locked out with no word why
        raise OrchError(f"{FLOWER_AUTH_ENV}: expected user:password (or several, comma-separated)")
    require_broker(obj)  # Flower itself starts on a broker that does not answer, and retries for ever
    if not os.environ.get(FLOWER_AUTH_ENV) and address not in LOOPBACK:
        click.echo(f"warning: Flower on {address}:{port} without a password: whoever reaches that port sees "
                   f"every task and can shut the workers down; set {FLOWER_AUTH_ENV}=user:password or "
                   f"--basic-auth-file", err=True)
    # Flower reads FLOWER_BASIC_AUTH itself: the password stays out of every argv built here.
    # Its workers page asks each worker over the broker and waits 1 s by default; on the embedded
    # broker a reply is two polled files, and a worker busy starting its next warm child can miss
    # that second (seen in CI: an empty workers list): 5 s costs nothing when replies come sooner.
    # a worker's app, not the CLI's: Flower long-polls the broker for events as a worker does
    make_celery(obj.settings).start(["flower", f"--port={port}", f"--address={address}",
                                     f"--inspect_timeout={FLOWER_INSPECT_TIMEOUT_MS}"])


def read_credentials(path: Path) -> str:
    """user:password pairs from a file (surrounding whitespace and blank lines ignored)."""
    try:
        pairs = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path} ({exc})", param_hint="--basic-auth-file") from None
    if not pairs or not all(":" in pair for pair in pairs):
        raise click.BadParameter(f"{path}: expected user:password", param_hint="--basic-auth-file")
    return ",".join(pairs)
