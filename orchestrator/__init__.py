"""The orch command line: validates specs, records jobs in the SQL store, sends tasks by name.

Never imports torch at import time and never imports worker/.
"""
