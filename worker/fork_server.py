"""Imported once, by the worker's fork server only (warm.py): the imports every job process needs.

Job processes are forked from this server (multiprocessing's "forkserver"), so each one starts with
torch, torchvision's models and the engine already imported: the 4-5 s of CPU a spawned process
spent importing them, on a CPU the running job needs, is spent once per worker instead of per job.
Each job still gets a fresh process that never ran another job.

What this process must never do, because its children inherit it: initialise CUDA (a forked child
could not use the device), or run an OpenMP region on more than one thread (libgomp's thread pool
does not survive a fork). So it keeps torch on one thread; each child sets its own count.
"""
from __future__ import annotations

import gc
import importlib
import logging
import signal

from worker.child import WARM_IMPORTS, die_with_parent, set_process_name

die_with_parent()  # the worker's kill -9 ends this server, and so (their own death signal) its children
set_process_name("orch-forkserver")
# A signal to the whole process group (a service manager's stop) is for the worker and the running
# job, which stops at its next step; this server goes when the worker does.
signal.signal(signal.SIGTERM, signal.SIG_IGN)

for _module in WARM_IMPORTS:
    importlib.import_module(_module)

import torch  # noqa: E402  (imported above; named here for the calls below)

torch.set_num_threads(1)
try:
    from shared.engine.quantize import warm_up as _warm_up_int8

    _warm_up_int8()  # its first call imports some 480 modules (torch.fx passes, networkx): once, here
except Exception as exc:  # a job that needs int8 pays for the imports itself; the server still serves
    logging.getLogger("orch.worker").warning("fork server: int8 warm-up failed (%s)", exc)

# Everything loaded so far lives as long as the server and its children: frozen out of the cyclic
# collector's sight, a child's full collections walk only the objects it made. In a scoring job, one
# such collection during the int8 conversion walked all of torch's objects (0.25 s of a 1.3-s
# conversion). It also keeps the collector from writing to, and so copying, the pages a child
# shares with this server (the use gc.freeze is documented for).
gc.collect()
gc.freeze()
