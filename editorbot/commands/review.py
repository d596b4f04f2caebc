"""`editorbot review`: correct an edit in the browser, re-render it, and learn from the fixes.

Parses the arguments, starts editorbot.review_server on 127.0.0.1 and prints its address.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review", help="correct an edit in the browser and save it as a new version",
        description="Serve OUT's review page on 127.0.0.1 (a free port, a secret token in the "
                    "address): play the raw and the edit, audition each cut, veto or move cuts "
                    "by beats or bars, trim, delete, reorder or add segments, set a target length "
                    "and let an editor re-propose the parts not yet touched, undo and redo. "
                    "Every change is journaled in OUT_corrections/. Save re-renders from the "
                    "raw as OUT_v2.wav, OUT_v3.wav... (earlier versions are kept) with its "
                    "segment list, timelines and review page, and writes the corrected pair "
                    "into the training layout (the raw's mel cached in --cache-dir), ready for "
                    "`editorbot train`.")
    p.add_argument("edit", metavar="OUT.wav|FOLDER",
                   help="the edit `editorbot edit` wrote (any version), or its folder")
    p.add_argument("--raw", metavar="RAW",
                   help="the raw recording (default: the one the segment list names)")
    p.add_argument("--data-dir", default="training_data", metavar="DIR",
                   help="training layout that saved corrections go into (default training_data)")
    p.add_argument("--cache-dir", default="cache", metavar="DIR",
                   help="the training layout's cache: Save caches the raw's mel there for "
                        "training (default: cache)")
    p.add_argument("--no-learn", action="store_true",
                   help="do not write saved corrections into the training layout")
    p.add_argument("--checkpoint", metavar="MODEL.pt",
                   help="a trained model that may re-propose the parts not yet touched to a "
                        "target length (the rule-based editor always may)")
    p.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..review_server import ReviewServer, ReviewSession

    if not 0 <= args.port < 65536:
        raise UserError(f"--port {args.port}: must be 0 (any free port) to 65535")
    session = ReviewSession(args.edit, raw=args.raw,
                            data_dir=None if args.no_learn else args.data_dir,
                            cache_dir=args.cache_dir, checkpoint=args.checkpoint)
    try:
        try:
            server = ReviewServer(session, port=args.port)
        except OSError as err:
            raise UserError(f"--port {args.port}: cannot listen on 127.0.0.1 ({err.strerror}); "
                            "choose another or leave it out") from None
        state = session.snapshot()
        print(f"review: {session.files.paths(state['version'])['audio']} (version "
              f"{state['version']}, {len(state['segments'])} segments) from {session.raw}")
        print(f"journal: {session.state.journal}")
        if session.layout is not None:
            print(f"learn: saves go into {session.layout.data_dir} as pair '{session.pair_name}' "
                  f"(the raw's mel into {session.layout.cache_dir})")
        print(f"open:   {server.url}")
        print("(Ctrl-C stops the server; nothing is lost, the journal keeps every change)")
        sys.stdout.flush()
        if args.open:
            import webbrowser
            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        session.close()
    return 0
