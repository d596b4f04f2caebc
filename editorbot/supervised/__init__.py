"""Supervised mel reconstruction: raw mel + per-raw-frame edit labels -> the edit's treatment.

Targets live in raw time through the alignment's pointers (labels.py); the model predicts
which raw frames are kept and a smooth time-frequency gain that turns raw into edit (model.py).
"""
