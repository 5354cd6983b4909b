"""`orch worker` (Celery workers, one per GPU) and `orch flower` (Celery's monitor on our broker)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import click

from orchestrator.context import Context, pass_context
from shared.config import DEFAULT_QUEUE


def worker_command(queues: str, hostname: str, loglevel: str, threads: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "worker", "--queues", queues, "--hostname", hostname, "--loglevel", loglevel]
    return cmd + (["--threads", str(threads)] if threads else [])


def gpu_indices(gpus: str) -> list[str]:
    """`all` or `0,1,...` -> the GPU indices to start one worker each on (no torch: nvidia-smi)."""
    if gpus.strip() != "all":
        indices = [g.strip() for g in gpus.split(",") if g.strip()]
        if not indices or not all(g.isdigit() for g in indices):
            raise click.BadParameter(f"expected all or GPU indices like 0,1,2; got {gpus!r}", param_hint="--gpus")
        return indices
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        raise click.BadParameter("all: no NVIDIA GPU found (nvidia-smi did not answer); "
                                 "leave --gpus out to run on the CPU", param_hint="--gpus") from None
    return [line.strip() for line in out.splitlines() if line.strip()]


def threads_each(threads: int | None, workers: int) -> int:
    """The CPUs of this machine shared out over its worker processes, unless --threads says."""
    return threads or max(1, len(os.sched_getaffinity(0)) // workers)


def worker_env(obj: Context, gpu: str | None) -> dict[str, str]:
    env = dict(os.environ, ORCH_HOME=str(obj.settings.home))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


@click.command()
@click.option("--queues", default=DEFAULT_QUEUE, show_default=True, help="Comma-separated queues to take jobs from.")
@click.option("--gpus", help="all, or GPU indices such as 0,1,2,3: one worker process per GPU, pinned by "
                             "CUDA_VISIBLE_DEVICES.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads each job trains with [this machine's CPUs, "
                                                        "shared out over the workers this command starts].")
@click.option("--name", default=None, help="Node name prefix [orch@HOST].")
@click.option("--loglevel", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@pass_context
def worker(obj: Context, queues: str, gpus: str | None, threads: int | None, name: str | None, loglevel: str) -> None:
    """Run jobs: a Celery worker that runs one job at a time, each in a fresh child process.

    Without --gpus it trains on the GPU if there is one, else on the CPU. A killed worker
    loses nothing: its job goes back to the queue when its lease expires and resumes from
    its last checkpoint. Ctrl-C stops cleanly (the running job is requeued). The worker keeps
    the next job's process started and ready, so jobs follow each other without a start-up wait.

    \b
    Examples:
      orch worker                      # one worker (CPU or the first GPU)
      orch worker --gpus all           # one worker per GPU of this machine
      orch worker --gpus 0,1,2,3       # four workers, one per GPU
      orch worker --threads 1          # a job trains on one CPU thread (e.g. two workers, two cores)
      orch worker --queues big,orch    # also take jobs sent with --queue big
    """
    indices = gpu_indices(gpus) if gpus else []
    obj.store  # create or check the schema once, before any worker races to
    base = name or f"orch@{socket.gethostname()}"
    each = threads_each(threads, max(1, len(indices)))
    if not indices:
        cmd = worker_command(queues, base, loglevel, each)
        os.execve(sys.executable, cmd, worker_env(obj, None))
    user, _, host = base.partition("@")
    procs = [subprocess.Popen(worker_command(queues, f"{user}-gpu{g}@{host or socket.gethostname()}", loglevel, each),
                              env=worker_env(obj, g)) for g in indices]
    supervise(procs)


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


@click.command()
@click.option("--port", default=5555, show_default=True, help="HTTP port.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--basic-auth", envvar="FLOWER_BASIC_AUTH", help="user:password required by the web UI and API.")
@pass_context
def flower(obj: Context, port: int, address: str, basic_auth: str | None) -> None:
    """Celery's Flower monitor on orch's broker: workers, tasks (orch.train[job id]) and queues.

    \b
    Examples:
      orch flower                      # http://127.0.0.1:5555
      orch flower --port 8080 --address 0.0.0.0 --basic-auth admin:secret
    """
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    obj.celery.start(argv)
