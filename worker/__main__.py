"""`python -m worker`: one Celery worker process running one job at a time (what `orch worker` starts)."""
from __future__ import annotations

import argparse
import logging
import socket

from shared.config import DEFAULT_QUEUE, load_settings
from worker.app import create_app
from worker.sweeper import Sweeper


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", default=DEFAULT_QUEUE, help="comma-separated queues to consume")
    parser.add_argument("--hostname", default=f"orch@{socket.gethostname()}", help="Celery node name")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s %(levelname)s %(name)s] %(message)s")
    settings = load_settings()
    app, supervisor = create_app(settings)
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    Sweeper(settings, supervisor.store, supervisor.resend).start()
    # threads pool, one slot: the task thread supervises a spawned child, so nothing forks
    # and the main thread keeps heartbeating to the broker (Flower sees the worker online).
    app.worker_main(["worker", "--pool", "threads", "--concurrency", "1", "--queues", ",".join(queues),
                     "--hostname", args.hostname, "--loglevel", args.loglevel, "--task-events",
                     "--without-mingle", "--without-gossip"])


if __name__ == "__main__":
    main()
