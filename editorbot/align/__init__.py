"""Raw-to-edit alignment: which raw audio each frame of a human edit copies.

    from editorbot.align import align_files
    result = align_files("jam_raw.wav", "jam_edit.wav")
    result.pointers, result.ops, result.edit, result.confidence, result.info
"""
from .core import Alignment, Evidence, align_audio, align_files, gather_evidence
from .params import DEFAULT_ALIGN, AlignParams

__all__ = ["Alignment", "AlignParams", "DEFAULT_ALIGN", "Evidence", "align_audio", "align_files",
           "gather_evidence"]
