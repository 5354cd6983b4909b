"""Whether bf16 autocast trains faster than fp32 on this CPU: measured once a machine, not assumed.

A CPU flag says bf16 arithmetic exists, not that it pays. resnet18 trains 1.9x faster in bf16 than
in fp32 on an AVX512-BF16 EPYC and several times faster on a Xeon with AMX; on a Xeon whose AMX the
hypervisor hides (avx512_bf16 without amx_tile, 2026-11-30) the same steps ran at 0.75x of fp32
(54 against 72 images/s at 112 px, batch 64), so bf16 there cost both speed and precision.
`--precision auto` on such a CPU times a few forward and backward steps of a small ResNet in each,
alternating so that a change in the machine's load falls on both, and takes bf16 at MIN_SPEEDUP or more.

One decision per machine (CPU model, torch, threads), not per model: a study's configs must not differ
in precision, or its comparisons would be the precision's as much as the configs'. It is kept in the
decode cache's folder, so the first job on a machine pays for it (a few seconds) and later ones read it.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch

from shared.atomic import atomic_write, exclusive_lock

log = logging.getLogger("orch.engine")

# Low, since the two mistakes differ in cost: fp32 where bf16 is 1.9x gives up half the machine,
# bf16 where it is 0.95x 5% of it (and autocast keeps fp32 weights, so its precision cost is small).
MIN_SPEEDUP = 1.05
CACHE_FILE = "bf16-probe.json"
# resnet18 at 96 px, 16 images: ~0.15 s a step on two cores. Smaller inputs flatter bf16 where it
# loses (that Xeon: 0.92x at 64 px, 0.80x at 96, 0.74x at 112 px x 32, where a real job ran 0.75x)
PROBE_SIZE, PROBE_BATCH = 96, 16
PAIRS, MIN_PAIRS, BUDGET_S = 6, 3, 1.0  # alternating fp32/bf16 steps: at most PAIRS, fewer past BUDGET_S


@dataclass(frozen=True)
class Bf16Probe:
    speedup: float  # fp32's step time over bf16's: above 1, bf16 is faster
    measured_now: bool  # by this process (else read from the cache)
    seconds: float = field(default=0.0, compare=False)  # the measurement's, when measured now

    @property
    def pays(self) -> bool:
        return self.speedup >= MIN_SPEEDUP

    def says(self) -> str:
        """The choice and why, for a job's history."""
        choice = "bf16" if self.pays else "fp32"
        return (f"--precision auto trains in {choice} on this CPU: bf16 steps ran {self.speedup:.2f}x as fast as "
                f"fp32 in a probe of a small ResNet (bf16 from {MIN_SPEEDUP:.2f}x; measured once a machine)")


def machine_key() -> str:
    """What the answer depends on: the CPU (a generic "Intel(R) Xeon(R) Processor" name, so with its
    family, model and stepping), the bf16 flags the hypervisor shows, torch's kernels and the threads."""
    fields: dict[str, str] = {}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name == "flags" and not flags:
                flags = set(value.split())
            elif name in ("model name", "cpu family", "model", "stepping") and name not in fields:
                fields[name] = value.strip()
    except OSError:
        pass
    shown = ",".join(sorted(flags & {"amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16"}))
    cpu = " ".join(fields.get(k, "?") for k in ("model name", "cpu family", "model", "stepping"))
    return f"{cpu} [{shown}] torch {torch.__version__} {torch.get_num_threads()} threads"


def bf16_probe(cache_dir: Path | None) -> Bf16Probe:
    """This machine's answer: from this process's memory or `cache_dir`'s file if measured before,
    else measured now and kept in both (without a cache folder, in memory only). One process measures
    at a time: two workers' first jobs on a new home measured together on the same cores, and could
    have answered differently; the second waits for the first's answer and adopts it."""
    key = machine_key()
    path = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
    if (key, path) in _KNOWN:
        return Bf16Probe(_KNOWN[key, path], measured_now=False)
    with ExitStack() as held:
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                held.enter_context(exclusive_lock(path.with_name(CACHE_FILE + ".lock")))
            except OSError as exc:  # a read-only cache: measured here, not kept
                log.warning("bf16 probe: cannot lock %s (%s): measuring without it", path, exc)
            kept = _read(path).get(key)
            if kept is not None:
                _KNOWN[key, path] = float(kept["speedup"])
                return Bf16Probe(_KNOWN[key, path], measured_now=False)
        started = time.perf_counter()
        # rounded as it is kept, so the process that measured and those that read its answer decide alike
        speedup = _KNOWN[key, path] = round(measure_speedup(), 3)
        seconds = time.perf_counter() - started
        log.info("bf16 probe: %.2fx fp32 in %.1f s (%s)", speedup, seconds, key)
        if path is not None:
            _keep(path, key, speedup)
    return Bf16Probe(speedup, measured_now=True, seconds=seconds)


def _keep(path: Path, key: str, speedup: float) -> None:
    """Add this machine's answer to the file (other machines' answers stay: a lab's shared cache)."""
    known = _read(path)
    known[key] = {"speedup": speedup, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        with atomic_write(path, "w") as fh:
            json.dump(known, fh, indent=1)
    except OSError as exc:  # a read-only cache measures again in the next job: slower, not wrong
        log.warning("bf16 probe: could not keep the answer in %s: %s", path, exc)


_KNOWN: dict[tuple[str, Path | None], float] = {}  # this process's answers: (machine, cache file) -> speed-up


def _read(path: Path | None) -> dict[str, dict[str, float | str]]:
    if path is None:
        return {}
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def measure_speedup() -> float:
    """fp32's fastest step time over bf16's, alternating steps of resnet18 (channels_last, forward,
    loss and backward, as training runs them) on random images. The global RNG and torch's thread
    count are left as they were.

    Each step is timed in this thread's CPU time, on one thread: a step's wall time on a loaded
    machine is mostly waiting for a core, which says nothing of the arithmetic, and the answer is
    kept for good. With a lab's jobs on both cores (2026-12-01, an Ice Lake Xeon whose bf16 runs
    0.41x quiet) five probes of two threads' wall time read 0.34 to 0.59; of one thread's CPU time,
    0.38 to 0.43. The fastest step of each, not the median, for what CPU time still carries of the
    load (caches shared with the other jobs)."""
    from torchvision.models import resnet18

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            model = resnet18(num_classes=2).to(memory_format=torch.channels_last).train()
            x = torch.randn(PROBE_BATCH, 3, PROBE_SIZE, PROBE_SIZE).to(memory_format=torch.channels_last)
            y = torch.randint(0, 2, (PROBE_BATCH,))

            def step(bf16: bool) -> float:
                start = time.thread_time()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = torch.nn.functional.cross_entropy(model(x).float(), y)
                loss.backward()  # type: ignore[no-untyped-call]
                model.zero_grad(set_to_none=True)
                return time.thread_time() - start

            step(False), step(True)  # each precision's first step creates its kernels
            times: dict[bool, list[float]] = {False: [], True: []}
            deadline = time.perf_counter() + BUDGET_S
            while len(times[True]) < PAIRS and (len(times[True]) < MIN_PAIRS or time.perf_counter() < deadline):
                for bf16 in (False, True):
                    times[bf16].append(step(bf16))
    finally:
        torch.set_num_threads(threads)
    return min(times[False]) / min(times[True])
