"""`orch report`'s analysis: configs grouped over seeds, statistics, convergence, charts, the HTML page.

Nothing here is imported by `orch --help`, `status` or `submit`; matplotlib is imported inside the
functions that draw. The t distributions are pure Python (tdist.py): scipy is for the tests only.
"""
