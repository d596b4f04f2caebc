"""`editorbot align RAW EDIT --out DIR`: align one edit to its raw, outside the data layout."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align", help="align one edit to the raw recording it was cut from",
        description="Find, for every frame of EDIT, the frame of RAW it copies (cuts, loops, "
                    "reorders of any length; audio not in the raw) and write "
                    "DIR/{name}_pointers.npy, _ops.npy, _info.json and _alignment.png.")
    p.add_argument("raw", help="the raw recording (wav, flac, ogg, mp3)")
    p.add_argument("edit", help="the edit made from it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", help="file name prefix (default: the edit's name without _edit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..features import DEFAULT_PARAMS

    return align_to_folder(Path(args.raw), Path(args.edit), Path(args.out), name=args.name,
                           params=DEFAULT_PARAMS)


def align_to_folder(raw: Path, edit: Path, out: Path, *, name: str | None, params) -> int:
    """Align `edit` to `raw` on the analysis grid `params` (a FeatureParams) and write the
    pointers, ops, info and picture into `out`; returns the exit status."""
    from ..align import align_files
    from ..align.prepare import alternatives, describe, output_paths, write_outputs
    from ..cache import file_fingerprint
    from ..errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    name = name or (edit.stem[:-len("_edit")] if edit.stem.endswith("_edit") and
                    len(edit.stem) > len("_edit") else edit.stem)
    outputs = output_paths(out, name)
    for path in outputs.values():
        if path.exists() and path.resolve() in (raw.resolve(), edit.resolve()):
            raise UserError(f"{path}: is an input file; choose another --out or --name")
    result = align_files(raw, edit, params=params)
    result.info["sources"] = {"raw": file_fingerprint(raw), "edit": file_fingerprint(edit)}
    write_outputs(result, outputs, title=name, params=params,
                  raw_duration_s=result.info["raw_frames"] / params.frames_per_s)
    info = result.info
    print(describe({"name": name, "skipped": False, "aligned_fraction": info["aligned_fraction"],
                    "cuts": info["cuts"], "loops": info["loops"], "reorders": info["reorders"],
                    "confidence": info["confidence"]["mean"], "alternatives": alternatives(info)}))
    for path in outputs.values():
        print(f"wrote {path}", file=sys.stderr)
    return 0
