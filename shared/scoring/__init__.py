"""Scoring runs without torch: the protocol (protocol.py: the parent's state machine, who fails it,
when and how its CSV is assembled), the inputs pinned at submit and their checks (inputs.py), and
the CSV's rows and part files (csv_parts.py). The model inference is shared/engine/predict.py."""
