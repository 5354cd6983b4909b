"""Code shared by the orch CLI (orchestrator/) and the workers (worker/).

Nothing here imports torch at package import time: the light modules (errors, spec,
config, store, queue) are used by the CLI; the heavy ones (models, data, engine) import torch.
"""
