"""The orch worker: a Celery worker whose tasks are thin supervisors of one spawned child per job.

Started by `orch worker` as `python -m worker`; never imported by orchestrator/.
"""
