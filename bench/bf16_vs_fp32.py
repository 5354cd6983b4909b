"""Does bf16 train faster than fp32 on this CPU, and does `--precision auto`'s probe say the same?

    .venv/bin/python bench/bf16_vs_fp32.py            # resnet18 at 112 px, batch 64: the efficiency bench's job
    .venv/bin/python bench/bf16_vs_fp32.py --load 2   # then the probe again, 5 times, beside 2 busy training processes

Times training steps (channels_last, forward, loss, backward, Adam step) of the same model in fp32 and
in bf16 autocast, alternating step by step so that a change in the machine's load falls on both, and
prints each side's images/s and their ratio; then what shared/engine/bf16_probe.py measures (its small
ResNet at 96 px) and what `auto` would choose. A probe that chose otherwise than the real ratio says
(bf16 at 1.05x or more) is a finding: the probe's size or threshold needs a look on this kind of CPU.
With --load N it probes again beside N processes that train without pause (two threads each), as a
lab's other jobs would: the answer is kept for the machine, so a load must not move it.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch
import torchvision
from common import machine_line  # bench/ is on sys.path when run as a script

from shared.engine.bf16_probe import MIN_SPEEDUP, measure_speedup


def step_times(size: int, batch: int, steps: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))
    sides = {}
    for name in ("fp32", "bf16"):
        model = torchvision.models.resnet18(num_classes=2).to(memory_format=torch.channels_last)
        sides[name] = (model, torch.optim.Adam(model.parameters(), 1e-3))

    def step(name: str) -> float:
        model, optimizer = sides[name]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return time.perf_counter() - start

    for name in sides:  # each side's kernels created before anything is timed
        step(name), step(name)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(steps):
        for name in sides:
            times[name].append(step(name))
    return times


def busy(stop: multiprocessing.synchronize.Event) -> None:
    """Train resnet18 on two threads until told to stop: another job on the same machine."""
    torch.set_num_threads(2)
    model = torchvision.models.resnet18(num_classes=2)
    x, y = torch.randn(16, 3, 96, 96), torch.randint(0, 2, (16,))
    while not stop.is_set():
        torch.nn.functional.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]


def probe_under_load(processes: int, probes: int) -> list[float]:
    context = multiprocessing.get_context("spawn")  # fork after torch's threads started can hang the child
    stop = context.Event()
    loads = [context.Process(target=busy, args=(stop,), daemon=True) for _ in range(processes)]
    for load in loads:
        load.start()
    try:
        time.sleep(3)  # their imports done, their steps under way
        return [measure_speedup() for _ in range(probes)]
    finally:
        stop.set()
        for load in loads:
            load.join(timeout=30)
            if load.is_alive():
                load.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112, help="pixels [112]")
    parser.add_argument("--batch", type=int, default=64, help="batch [64]")
    parser.add_argument("--steps", type=int, default=12, help="timed steps of each side [12]")
    parser.add_argument("--load", type=int, default=0, help="then probe beside this many busy processes [0]")
    parser.add_argument("--probes", type=int, default=5, help="probes under --load [5]")
    args = parser.parse_args()
    print(machine_line())
    times = step_times(args.size, args.batch, args.steps)
    rate = {name: args.batch / statistics.median(ts) for name, ts in times.items()}
    real = rate["bf16"] / rate["fp32"]
    print(f"resnet18 at {args.size} px, batch {args.batch}, {args.steps} alternating steps each (median):")
    print(f"  fp32 {rate['fp32']:.1f} images/s, bf16 {rate['bf16']:.1f} images/s: bf16 at {real:.2f}x fp32")
    started = time.perf_counter()
    probed = measure_speedup()
    print(f"  the probe of `--precision auto`: bf16 at {probed:.2f}x fp32 in {time.perf_counter() - started:.1f} s; "
          f"auto trains in {'bf16' if probed >= MIN_SPEEDUP else 'fp32'} (bf16 from {MIN_SPEEDUP}x)")
    agree = (probed >= MIN_SPEEDUP) == (real >= MIN_SPEEDUP)
    print(f"  {'the probe chose as the real steps would' if agree else 'the probe chose OTHERWISE than the real steps'}")
    if args.load:
        loaded = probe_under_load(args.load, args.probes)
        choices = {"bf16" if r >= MIN_SPEEDUP else "fp32" for r in loaded}
        print(f"  the probe beside {args.load} busy processes, {args.probes} times: "
              f"{' '.join(f'{r:.2f}' for r in loaded)}x (quiet {probed:.2f}x; "
              f"{max(abs(r / probed - 1) for r in loaded):.0%} off at most); auto would train in {' or '.join(sorted(choices))}")


if __name__ == "__main__":
    main()
