"""What a worker's waiting job process costs the job that runs: the training ceiling, measured alone,
beside an idle `orch worker` (its warm job process ready), and beside a loop that imports torch at
SCHED_IDLE (what a warm process does while it warms up behind a running job).

    .venv/bin/python bench/warm_interference.py            # 12 s per measurement, about 2 minutes
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_line  # bench/ is on sys.path when run as a script
from efficiency import train_ceiling
from harness import Orch

from shared.engine.precision import default_device, resolve
from shared.spec import ModelSpec

IMPORT_LOOP = f"while true; do chrt -i 0 {sys.executable} -c 'import torch, torchvision.models'; done"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds per measurement [12]")
    args = parser.parse_args()
    print(machine_line())
    spec = ModelSpec(arch="resnet18", image_size=112, num_classes=2)
    prec = resolve("fp32", default_device())

    def ceiling(label: str) -> None:
        print(f"  {label:34s} {train_ceiling(spec, 64, prec, args.seconds):6.1f} images/s")

    print("resnet18 at 112 px, batch 64, fp32, forward + backward + Adam on random tensors:")
    ceiling("alone")
    with tempfile.TemporaryDirectory(prefix="orch-warm-") as root, Orch(Path(root) / "home") as orch:
        orch.start_worker()
        time.sleep(12)  # its job process imports torch, then waits
        ceiling("beside an idle worker")
    ceiling("alone")
    loop = subprocess.Popen(["bash", "-c", IMPORT_LOOP], start_new_session=True)
    try:
        time.sleep(1)
        ceiling("beside a SCHED_IDLE torch import")
    finally:
        subprocess.run(["pkill", "-g", str(loop.pid)], check=False)
    ceiling("alone")


if __name__ == "__main__":
    main()
