"""`editorbot edit`: edit a raw recording with the rule-based editor or a trained model.

Propose segments, render them from the raw's own samples, write the timeline exports and
a review page next to the output, and say where each went.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys

from ..errors import UserError

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_UNITS = re.compile(r"^(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in '3:30', '1:02:03', '210', '210.5', '3m30s', '90s', '2m' or '1h5m'."""
    t = text.strip().lower().replace(" ", "")
    m = _CLOCK.match(t)
    if m:
        hours, minutes, seconds = m.groups()
        if float(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
            raise UserError(f"--target-duration {text}: minutes and seconds must be below 60")
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    try:
        return float(t)
    except ValueError:
        pass
    m = _UNITS.match(t)
    if t and m and any(m.groups()):
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        return h * 3600 + mi * 60 + s
    raise UserError(f"--target-duration {text}: not a duration; write 3:30, 210 or 3m30s")


def _duration_arg(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be longer than 0 s")
    return seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit", help="edit a raw recording into a track (no training needed)",
        description="Edit INPUT into OUTPUT by copying raw audio: the rule-based structure "
                    "editor by default, or a trained model with --checkpoint. Writes the audio, "
                    "the segment list, timelines (.otio, .edl, .fcp.xml), Audacity labels and a "
                    "review page (OUTPUT_review.html) next to OUTPUT.")
    p.add_argument("input", metavar="INPUT", help="the raw recording (wav, flac, ogg, mp3)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT.wav",
                   help="the edit to write (.wav, .flac or .ogg)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="a trained model (models/<run>/best.pt); default: the rule-based editor")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--target-duration", type=_duration_arg, metavar="DURATION",
                        help="length of the edit: 3:30, 210 or 3m30s")
    length.add_argument("--keep", type=float, metavar="FRACTION",
                        help="fraction of the raw to keep, e.g. 0.3 (default: the median of "
                             "your pairs in ./training_data, else 0.3)")
    p.add_argument("--seam-search-ms", type=float, default=20.0,
                   help="move each cut within +- this many ms to where it joins best (default 20)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="a cache where `editorbot stems` wrote this raw's stems, for models "
                        "trained with stems (default: separate them now)")
    p.add_argument("--no-review", action="store_true", help="do not write the review page")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT and the files next to it when they exist")
    p.set_defaults(func=run)


class _Warnings(logging.Handler):
    """Keeps the warnings logged while the editor works, for the review page."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run(args: argparse.Namespace) -> int:
    done = edit_to_files(args.input, args.output, checkpoint=args.checkpoint,
                         target_duration_s=args.target_duration, keep=args.keep,
                         seam_search_ms=args.seam_search_ms, review=not args.no_review,
                         cache_dir=args.cache_dir, overwrite=args.overwrite)
    for line in done["lines"]:
        print(line)
    sys.stdout.flush()
    return 0


def edit_to_files(raw, output, *, checkpoint=None, target_duration_s: float | None = None,
                  keep: float | None = None, seam_search_ms: float = 20.0,
                  review: bool = True, cache_dir=None, overwrite: bool = False) -> dict:
    """Propose an edit of `raw`, render it to `output` and write its exports and review page.

    Args:
        raw: the raw recording.
        output: the edit's audio (.wav, .flac or .ogg); the other files go next to it.
        checkpoint: a trained model's checkpoint path; None: the rule-based editor.
        target_duration_s, keep: the wanted length (see editorbot.editors.propose).
        cache_dir: cached stems for models that read them (see editorbot.editors.propose).
        overwrite: replace outputs that exist (without it they are an error); an output is
            never allowed to be the raw or the checkpoint.

    Returns:
        {"edit": Edit as rendered, "report": RenderReport, "paths": {kind: Path},
         "lines": what to tell the user, one line per output}
    """
    from pathlib import Path

    from ..audio import check_audio
    from ..editors import propose
    from ..errors import log
    from ..export import export_all, export_paths
    from ..outputs import check_outputs
    from ..render import OUTPUT_FORMATS, render
    from ..review import write_review_page

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
                       cache_dir=cache_dir)
    finally:
        log.removeHandler(warnings)
    edit.raw_path = str(raw)
    edit.raw_duration_s = info.duration_s
    editor = f"model {checkpoint}" if checkpoint else "the rule-based structure editor"

    report = render(raw, edit, out, seam_search_ms=seam_search_ms, progress=True)
    paths = {"edit": report.out_path}
    paths.update(export_all(report.edit, out.with_suffix(""), sr=report.sr, channels=report.channels))
    paths["plot"] = _decision_plot(decision, report.edit,
                                   info.duration_s, title=f"{out.name}: {editor}")
    lines = report.lines()[-2:]
    asked = target_duration_s or (keep * info.duration_s if keep else None)
    length = f"{_clock(report.duration_s)} from {_clock(info.duration_s)} of raw by {editor}"
    if asked:
        length += f" (asked {_clock(asked)}, off by {100 * abs(report.duration_s / asked - 1):.1f}%)"
    lines += [f"edit:       {paths['edit']}  {length}",
              f"segments:   {paths['segments']}  ({len(report.edit.segments)} segments)",
              f"timelines:  {paths['otio']}, {paths['edl']}, {paths['fcp_xml']}",
              f"labels:     {paths['labels']}  (Audacity: File > Import > Labels)",
              f"plot:       {paths['plot']}  (raw time against edit time, as `prepare` draws alignments)"]
    if review:
        notes = [f"made by {editor} from {raw}"] + warnings.lines
        paths["review"] = write_review_page(review_page, raw_path=raw,
                                            edit_audio_path=out, edit=edit, render_report=report,
                                            notes=notes)
        lines.append(f"review:     {paths['review']}  (open it in a browser)")
    return {"edit": report.edit, "report": report, "paths": paths, "lines": lines}


def _decision_plot(path, edit, raw_duration_s: float, *, title: str):
    """The editor's decision drawn like an alignment: raw time against edit time, each
    segment coloured by what it does (cut, loop, reorder). Confidence is the editor's own
    where the segments carry one, else 1."""
    import numpy as np

    from ..align.plot import plot_alignment
    from ..edits import ops_from_pointers, segments_to_pointers
    from ..features import DEFAULT_PARAMS

    fps = DEFAULT_PARAMS.frames_per_s
    pointers = segments_to_pointers(edit, DEFAULT_PARAMS)
    ops = ops_from_pointers(pointers, fade_in_frames=int(round(edit.segments[0].fade_in_s * fps)),
                            fade_out_frames=int(round(edit.segments[-1].fade_out_s * fps)))
    confidence = np.ones(len(pointers), np.float32)
    for seg, start in zip(edit.segments, edit.edit_starts_s()):
        if seg.confidence is not None:
            j0 = int(np.ceil(start * fps - 1e-6))
            confidence[j0:int(np.ceil((start + seg.duration_s) * fps - 1e-6))] = seg.confidence
    return plot_alignment(path, edit=edit, ops=ops, confidence=confidence, params=DEFAULT_PARAMS,
                          raw_duration_s=raw_duration_s, title=title)


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    return f"{int(m)}:{s:04.1f}"
