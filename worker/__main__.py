"""`python -m worker`: one Celery worker process running one job at a time (what `orch worker` starts)."""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from celery.utils.nodenames import default_nodename, host_format

from shared.broker_errors import broker_boundary
from shared.celery_app import check_broker
from shared.config import DEFAULT_QUEUE, check_worker_timing, load_settings, redact
from shared.delivery import Relay
from shared.errors import UNAVAILABLE_EXIT, BrokerUnavailable, ConfigError, StoreRefused, StoreUnavailable
from worker.app import create_app
from worker.artifacts_owner import claim_artifacts
from worker.sweeper import Sweeper


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", default=DEFAULT_QUEUE, help="comma-separated queues to consume")
    parser.add_argument("--hostname", default=f"orch@{socket.gethostname()}", help="Celery node name")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("ORCH_THREADS") or 0) or None,
                        help="torch threads per job [every CPU this worker may use]")
    parser.add_argument("--no-warm", dest="warm", action="store_false",
                        help="spawn each job's process when the job arrives (no process kept ready)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        check_worker_timing(settings)
    except ConfigError as exc:  # one line and exit 2, like the CLI's user errors
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    node = host_format(default_nodename(args.hostname))  # as Celery names the node: w1@%h -> w1@HOST
    try:
        app, supervisor = create_app(settings, args.threads, warm=args.warm, name=node)
        claim_artifacts(settings.artifacts, supervisor.store)
    except (StoreUnavailable, StoreRefused) as exc:  # it was a traceback; exit 3 as the CLI's (2: refused)
        print(f"Error: ORCH_DATABASE_URL ({redact(settings.database_url)}): {exc}", file=sys.stderr)
        raise SystemExit(UNAVAILABLE_EXIT if isinstance(exc, StoreUnavailable) else 2) from None
    except ConfigError as exc:  # an artifacts folder of another store's
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:  # Celery retries a broker it never reached forever, one log line every few seconds
        with broker_boundary():
            check_broker(app)
    except BrokerUnavailable as exc:
        print(f"Error: ORCH_BROKER_URL ({redact(settings.broker_url)}): {str(exc).rstrip('.')}; a worker retries a broker it "
              f"loses while running, not one it never reached", file=sys.stderr)
        raise SystemExit(UNAVAILABLE_EXIT) from None
    # after the checks: a refusal is its one line, not the store's migration log above it
    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s %(levelname)s %(name)s] %(message)s")
    # what a lab's admin checks first on each host: the same store, and the same artifacts folder
    logging.getLogger("orch.worker").info("%s: store %s, artifacts %s, broker %s", node, redact(settings.database_url),
                                          settings.artifacts, redact(settings.broker_url))
    supervisor.children.start()  # from the main thread: it outlives the child (see warm.py)
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    Sweeper(settings, supervisor.store, supervisor.resend, f"sweeper of {supervisor.owner}",
            held_here=supervisor.holding).start()
    Relay(app, supervisor.store).start()  # sends what the outbox owes, re-sends what was lost
    # threads pool, one slot: the task thread supervises a spawned child, so nothing forks
    # and the main thread keeps heartbeating to the broker (Flower sees the worker online).
    # app.start, not app.worker_main, which drops the exit code: a worker that died of an
    # unrecoverable error exited 0, as if stopped on purpose
    code = app.start(["worker", "--pool", "threads", "--concurrency", "1", "--queues", ",".join(queues),
                      "--hostname", args.hostname, "--loglevel", args.loglevel, "--task-events",
                      "--without-mingle", "--without-gossip"])
    if supervisor.outdated:  # it stopped itself: say why where it was started, as it refuses at start
        print(f"Error: ORCH_DATABASE_URL ({redact(settings.database_url)}): {supervisor.outdated}", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(code or 0)


if __name__ == "__main__":
    main()
