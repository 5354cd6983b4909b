"""`orch worker`'s Celery node names: unique per worker, as Flower and Celery's remote control need."""
from __future__ import annotations

import socket

from orchestrator.commands.worker import node_name


def test_two_workers_on_one_machine_get_two_names() -> None:
    """Both were orch@HOST: Flower listed one worker (DuplicateNodenameWarning) while three ran."""
    host = socket.gethostname()
    assert node_name(None, 4242) == f"orch-4242@{host}" != node_name(None, 4243)
    assert node_name("lab@box", 4242) == "lab@box"  # --name is taken as given


def test_one_name_per_gpu_with_the_prefix_given() -> None:
    host = socket.gethostname()
    assert [node_name(None, gpu=g) for g in ("0", "1")] == [f"orch-gpu0@{host}", f"orch-gpu1@{host}"]
    assert node_name("lab@box", gpu="3") == "lab-gpu3@box"
    assert node_name("lab", gpu="3") == f"lab-gpu3@{host}"
