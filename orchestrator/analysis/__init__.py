"""`orch report`'s analysis: configs grouped over seeds, statistics, convergence, charts, the HTML page.

Nothing here is imported by `orch --help`, `status` or `submit`; scipy and matplotlib are imported
inside the functions that compute or draw.
"""
