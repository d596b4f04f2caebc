"""`editorbot render`: render a segment list or a pointer sequence from the raw's own samples."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render", help="render an edit (segments or pointers) from the raw recording",
        description="Render an edit from RAW's own samples (its rate, channels and bit depth) "
                    "with crossfaded, searched cuts; print a report on every seam and write "
                    "the timeline exports (.otio, .edl, .fcp.xml, Audacity labels, segment "
                    "JSON) next to OUT.")
    p.add_argument("raw", metavar="RAW", help="the raw recording the edit was cut from")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pointers", metavar="P.npy",
                     help="pointer sequence: raw analysis frame per edit frame, -1 = not in raw "
                          "(a {sample}_info.json beside it may give sample_rate and hop_length)")
    src.add_argument("--segments", metavar="S.json",
                     help="segment list (.json from Edit.save, or a .otio timeline)")
    p.add_argument("-o", "--out", required=True, metavar="OUT.wav", help="output .wav, .flac or .ogg")
    p.add_argument("--seam-search-ms", type=float, default=20.0,
                   help="move each cut within +- this many ms to where it joins best "
                        "(default 20; 0 = off)")
    p.add_argument("--crossfade-ms", type=float, default=5.0,
                   help="crossfade at hard cuts (default 5)")
    p.add_argument("--beats", metavar="BEATS.txt",
                   help="raw beat times, one number (seconds) per line: cuts snap to them")
    p.add_argument("--subtype", help="output sample format, e.g. PCM_16, PCM_24, FLOAT "
                                     "(default: the raw's when the output format holds it, else PCM_24; VORBIS for .ogg)")
    p.add_argument("--allow-clipping", action="store_true",
                   help="write at the level the gains ask for and clip samples past full scale "
                        "(default: lower the whole edit by one gain so that nothing clips)")
    p.add_argument("--no-exports", action="store_true", help="write the audio only")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT and its exports when they exist (never the command's inputs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..edits import Edit
    from ..errors import UserError, log
    from ..export import export_all, export_paths
    from ..features import DEFAULT_PARAMS
    from ..outputs import check_outputs
    from ..render import render

    raw, out = Path(args.raw), Path(args.out)
    source = Path(args.segments or args.pointers)
    inputs = {"the raw recording": raw, f"the {'segment list' if args.segments else 'pointer file'}":
              source, "the beats file": args.beats}
    if args.pointers:
        inputs["the pointers' info file"] = _info_path(source)
    outputs = [out] + ([] if args.no_exports else list(export_paths(out.with_suffix("")).values()))
    check_outputs(outputs, inputs=inputs, overwrite=args.overwrite)
    if args.segments:
        seg_path = Path(args.segments)
        if seg_path.suffix.lower() == ".otio":
            from ..export import read_otio
            edit = read_otio(seg_path)
        else:
            edit = Edit.load(seg_path)
    else:
        edit = _edit_from_pointers(Path(args.pointers), params=DEFAULT_PARAMS)
    if edit.raw_path and Path(edit.raw_path).name != raw.name:
        log.warning("%s: the segments name raw %s; rendering from %s", args.segments,
                    edit.raw_path, raw)
    edit.raw_path = str(raw)
    beats = None
    if args.beats:
        try:
            beats = [float(line) for line in Path(args.beats).read_text().split() if line]
        except (OSError, ValueError) as err:
            raise UserError(f"{args.beats}: expected one beat time in seconds per line ({err})") \
                from None
    report = render(raw, edit, args.out, seam_search_ms=args.seam_search_ms, beats_s=beats,
                    subtype=args.subtype, crossfade_ms=args.crossfade_ms,
                    allow_clipping=args.allow_clipping, progress=True)
    for line in report.lines():
        print(line)
    print(f"wrote {report.out_path}")
    if not args.no_exports:
        paths = export_all(report.edit, out.with_suffix(""), sr=report.sr,
                           channels=report.channels, render=report.level_json())
        print("exports: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


def _edit_from_pointers(path, *, params):
    """The segments of a pointer file, on the grid of the {sample}_info.json beside it, else
    on `params` (a FeatureParams)."""
    import numpy as np

    from ..edits import pointers_to_segments
    from ..errors import UserError
    from ..features import FeatureParams
    from ..layout import read_json_object, read_npy

    if not path.is_file():
        raise UserError(f"{path}: no such pointer file")
    pointers = read_npy(path, "pass the pointers.npy that `editorbot prepare` or `align` wrote")
    if pointers.ndim != 1 or not np.issubdtype(pointers.dtype, np.integer) or len(pointers) == 0:
        raise UserError(f"{path}: pointers must be a non-empty 1-D integer array, got "
                        f"{pointers.dtype} {pointers.shape}")
    info_path = _info_path(path)
    if info_path != path and info_path.is_file():
        info = read_json_object(info_path, fix="fix or remove it")
        if "sample_rate" in info and "hop_length" in info:
            sr, hop = info["sample_rate"], info["hop_length"]
            if not (isinstance(sr, int) and isinstance(hop, int) and sr > 0 and hop > 0):
                raise UserError(f"{info_path}: sample_rate {sr!r} and hop_length {hop!r} must be "
                                "positive integers; fix or remove it")
            params = FeatureParams(sr=sr, hop_length=hop)
    return pointers_to_segments(pointers, params)


def _info_path(pointers_path):
    """{sample}_info.json beside a {sample}_pointers.npy."""
    return pointers_path.with_name(pointers_path.name.replace("_pointers.npy", "_info.json"))
