"""Synthetic jam sessions with exact ground truth: raw band recordings, edits, mastering.

`write_corpus` writes pairs in the training-data layout plus truth/{name}.json; the
modules: config (every knob), compose, instruments, personas, splice, master, corpus.
"""
from .config import SynthConfig
from .corpus import plan_pair, write_corpus
from .personas import ADAPTATION_PERSONAS, PERSONAS, edit_stats, pretraining_personas

__all__ = ["SynthConfig", "PERSONAS", "ADAPTATION_PERSONAS", "pretraining_personas", "edit_stats",
           "plan_pair", "write_corpus"]
