"""Edit a raw recording into files: propose segments, render them from the raw's own samples,
and write the segment list, timelines, decision plot and review page next to the audio.

What `editorbot edit` and the demo run; the command line only parses and prints.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .align.plot import plot_alignment
from .audio import check_audio
from .editors import propose
from .edits import Edit, clock, ops_from_pointers, segments_to_pointers
from .errors import UserError, log
from .export import export_all, export_paths
from .features import DEFAULT_PARAMS, FeatureParams
from .outputs import check_outputs
from .render import OUTPUT_FORMATS, render
from .review import write_review_page


class _Warnings(logging.Handler):
    """Keeps the warnings logged while the editor works, for the review page."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def edit_to_files(raw: str | os.PathLike, output: str | os.PathLike, *,
                  checkpoint: str | os.PathLike | None = None,
                  target_duration_s: float | None = None, keep: float | None = None,
                  allow_loops: bool = False, seam_search_ms: float = 20.0, review: bool = True,
                  cache_dir: str | os.PathLike | None = None, allow_clipping: bool = False,
                  overwrite: bool = False,
                  params: FeatureParams = DEFAULT_PARAMS) -> dict:
    """Propose an edit of `raw`, render it to `output` and write its exports and review page.

    Args:
        raw: the raw recording.
        output: the edit's audio (.wav, .flac or .ogg); the other files go next to it.
        checkpoint: a trained model's checkpoint path; None: the rule-based editor.
        target_duration_s, keep: the wanted length (see editorbot.editors.propose).
        allow_loops: the rule-based editor may loop a passage to reach the length.
        seam_search_ms: each cut moves within +- this to where it joins best.
        review: write the review page (OUTPUT_review.html).
        cache_dir: cached stems for models that read them (see editorbot.editors.propose).
        allow_clipping: write at the level the gains ask for, clipping what passes full
            scale (default: one gain lowers the whole edit so that nothing clips; see
            editorbot.render).
        overwrite: replace outputs that exist (without it they are an error); an output is
            never allowed to be the raw or the checkpoint.
        params: the analysis grid of the decision plot.

    Returns:
        {"edit": Edit as rendered, "report": RenderReport, "paths": {kind: Path},
         "lines": what to tell the user, one line per output}
    """
    raw, out = Path(raw), Path(output)
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise UserError(f"{out}: the edit is written as .wav, .flac or .ogg; name it OUTPUT.wav")
    info = check_audio(raw, need="to edit")  # readable, decodes, not silent
    decision = out.with_name(f"{out.stem}_decision.png")
    review_page = out.with_name(f"{out.stem}_review.html")
    outputs = [out, decision, *export_paths(out.with_suffix("")).values()] + [review_page] * review
    check_outputs(outputs, inputs={"the input recording": raw, "the checkpoint": checkpoint},
                  overwrite=overwrite)

    warnings = _Warnings()
    log.addHandler(warnings)
    try:
        edit = propose(raw, checkpoint=checkpoint, target_duration_s=target_duration_s, keep=keep,
                       allow_loops=allow_loops, cache_dir=cache_dir)
    finally:
        log.removeHandler(warnings)
    edit.raw_path = str(raw)
    edit.raw_duration_s = info.duration_s
    editor = f"model {checkpoint}" if checkpoint else "the rule-based structure editor"

    report = render(raw, edit, out, seam_search_ms=seam_search_ms, allow_clipping=allow_clipping,
                    progress=True)
    paths = {"edit": report.out_path}
    paths.update(export_all(report.edit, out.with_suffix(""), sr=report.sr, channels=report.channels,
                            render=report.level_json()))
    paths["plot"] = _decision_plot(decision, report.edit, info.duration_s,
                                   title=f"{out.name}: {editor}", params=params)
    lines = report.lines()[-3:]  # the seam summary, the level line, the output
    asked = target_duration_s or (keep * info.duration_s if keep else None)
    length = f"{clock(report.duration_s)} from {clock(info.duration_s)} of raw by {editor}"
    if asked:
        length += f" (asked {clock(asked)}, off by {100 * abs(report.duration_s / asked - 1):.1f}%)"
    lines += [f"edit:       {paths['edit']}  {length}",
              f"segments:   {paths['segments']}  ({len(report.edit.segments)} segments)",
              f"timelines:  {paths['otio']}, {paths['edl']}, {paths['fcp_xml']}",
              f"labels:     {paths['labels']}  (Audacity: File > Import > Labels)",
              f"plot:       {paths['plot']}  (raw time against edit time, as `prepare` draws alignments)"]
    if not checkpoint:
        lines.append("yours:      a few of your own raw/edit pairs make an editor that edits like you: "
                     "`editorbot prepare`, then `editorbot train pointer` (README: Train on your edits)")
    if review:
        notes = [f"made by {editor} from {raw}"] + warnings.lines  # the page adds the level line
        paths["review"] = write_review_page(review_page, raw_path=raw,
                                            edit_audio_path=out, edit=edit, render_report=report,
                                            notes=notes)
        lines.append(f"review:     {paths['review']}  (open it in a browser)")
    return {"edit": report.edit, "report": report, "paths": paths, "lines": lines}


def _decision_plot(path: Path, edit: Edit, raw_duration_s: float, *, title: str,
                   params: FeatureParams) -> Path:
    """The editor's decision drawn like an alignment: raw time against edit time, each
    segment coloured by what it does (cut, loop, reorder). The confidence strip shows the
    editor's own where the segments carry one (else 1); an editor without any (the
    rule-based one) gets no strip."""
    fps = params.frames_per_s
    pointers = segments_to_pointers(edit, params)
    ops = ops_from_pointers(pointers, fade_in_frames=int(round(edit.segments[0].fade_in_s * fps)),
                            fade_out_frames=int(round(edit.segments[-1].fade_out_s * fps)))
    confidence = None
    if any(seg.confidence is not None for seg in edit.segments):
        confidence = np.ones(len(pointers), np.float32)
    for seg, start in zip(edit.segments, edit.edit_starts_s()):
        if confidence is not None and seg.confidence is not None:
            j0 = int(np.ceil(start * fps - 1e-6))
            confidence[j0:int(np.ceil((start + seg.duration_s) * fps - 1e-6))] = seg.confidence
    return plot_alignment(path, edit=edit, ops=ops, confidence=confidence, params=params,
                          raw_duration_s=raw_duration_s, title=title)
