"""Fuzz the commands with damaged inputs made from good ones: no traceback, no input changed.

From one good pair (a 20 s jam and an edit cut from it), its pointer files and a small
pointer checkpoint, makes N damaged copies of each kind: audio (raw WAV, raw MP3, edit WAV),
pointer files (pointers.npy, ops.npy, info.json) and checkpoints, each cut at a random
point, with random bytes flipped, or rewritten with a wrong dtype or shape. Each goes
through the commands that read it (prepare, edit, render, evaluate), run in this process
through editorbot.cli.main. Counts, per command: exit 0, exit 2, any other outcome
(a traceback: an exception that is not a UserError, or another exit status), and the
inputs whose checksum changed.

    .venv/bin/python benchmarks/bench_fuzz.py --per-kind 40 --seed 0
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editorbot.audio import write  # noqa: E402
from editorbot.cli import main  # noqa: E402
from editorbot.edits import Edit, Segment  # noqa: E402

SR = 22050
TRUTH = Edit([Segment(1.0, 5.0), Segment(12.0, 4.0, crossfade_s=0.02), Segment(6.0, 3.0)])


def jam(seconds: float, seed: int) -> np.ndarray:
    """Notes with harmonics and noise hits on a jittered grid, (n, 1) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    y = np.zeros(n + SR, np.float32)
    t0 = 0.0
    while t0 < seconds:
        i = int(t0 * SR)
        t = np.arange(int(rng.uniform(0.1, 0.6) * SR)) / SR
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5)) * np.exp(-4 * t)
        y[i:i + len(t)] += 0.2 * tone.astype(np.float32)
        m = int(0.03 * SR)
        y[i:i + m] += (0.1 * rng.normal(0, 1, m) * np.exp(-np.arange(m) / 200)).astype(np.float32)
        t0 += 0.25 + rng.normal(0, 0.01)
    y = y[:n] + rng.normal(0, 1e-3, n).astype(np.float32)
    return (y / np.abs(y).max() * 0.8)[:, None]


def splice(raw: np.ndarray, edit: Edit) -> np.ndarray:
    parts = [raw[int(s.raw_start_s * SR):int((s.raw_start_s + s.duration_s) * SR)] for s in edit.segments]
    return np.concatenate(parts)


def make_good(root: Path) -> dict[str, Path]:
    """The good pair prepared, a segment list and a small untrained pointer checkpoint."""
    from editorbot.checkpoint import save_checkpoint
    from editorbot.config import load, to_dict
    from editorbot.features import DEFAULT_PARAMS
    from editorbot.pointer.config import PointerConfig
    from editorbot.pointer.model import PointerNet

    data, cache = root / "good" / "training_data", root / "good" / "cache"
    y = jam(20, seed=1)
    write(data / "input" / "a_raw.wav", y, SR)
    write(data / "desired_output" / "a_edit.wav", splice(y, TRUTH), SR)
    sf.write(root / "good" / "raw.mp3", y, SR, format="MP3")
    code, said = run(["prepare", "--data-dir", str(data), "--cache-dir", str(cache)])
    assert code == 0, said
    TRUTH.save(root / "good" / "cut_segments.json")
    cfg = load(PointerConfig, Path(__file__).resolve().parents[1] / "configs" / "pointer" / "small.json")
    net = PointerNet(cfg.model)
    save_checkpoint(root / "good" / "best.pt", {
        "kind": "pointer", "config": to_dict(cfg), "feature_params": DEFAULT_PARAMS.as_dict(),
        "stems_backend": None, "model_state": net.state_dict(), "keep_ratio": 0.5,
        "jumps_back": True, "keep_threshold": 0.5, "split": {"train": [], "val": []}})
    ps = data / "pointer_sequences"
    return {"data": data, "cache": cache, "raw": data / "input" / "a_raw.wav",
            "edit": data / "desired_output" / "a_edit.wav", "mp3": root / "good" / "raw.mp3",
            "pointers": ps / "a_pointers.npy", "ops": ps / "a_ops.npy", "info": ps / "a_info.json",
            "segments": root / "good" / "cut_segments.json", "checkpoint": root / "good" / "best.pt"}


# --- damage ----------------------------------------------------------------------------------

def truncate(blob: bytes, rng) -> bytes:
    return blob[:int(rng.integers(0, len(blob)))]


def flip(blob: bytes, rng) -> bytes:
    out = bytearray(blob)
    # Half the time in the first 512 bytes (headers), else anywhere.
    for _ in range(int(rng.integers(1, 9))):
        limit = min(len(out), 512) if rng.random() < 0.5 else len(out)
        out[int(rng.integers(0, limit))] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def retype_npy(path: Path, rng) -> bytes:
    """The array in a wrong dtype or shape."""
    a = np.load(path)
    choice = rng.integers(0, 5)
    if choice == 0:
        a = a.astype(np.float32)
    elif choice == 1:
        a = a.astype(np.int8)
    elif choice == 2:
        a = np.stack([a, a])
    elif choice == 3:
        a = a[: len(a) // 2]
    else:
        a = a.astype(np.uint64) + np.uint64(10 ** 9)
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def retype_audio(path: Path, rng) -> bytes:
    """The audio rewritten with another sample format (still valid: should work)."""
    y, sr = sf.read(path, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=["PCM_U8", "ULAW", "DOUBLE", "PCM_32"][int(rng.integers(0, 4))])
    return buf.getvalue()


def retype_checkpoint(path: Path, rng) -> bytes:
    """Weights in another dtype or a key missing (written as plain data)."""
    import torch
    ckpt = torch.load(path, weights_only=True)
    choice = rng.integers(0, 3)
    if choice == 0:
        ckpt["model_state"] = {k: v.to(torch.float16) for k, v in ckpt["model_state"].items()}
    elif choice == 1:
        key = sorted(ckpt["model_state"])[int(rng.integers(0, len(ckpt["model_state"])))]
        ckpt["model_state"][key] = ckpt["model_state"][key].flatten()[:3]
    else:
        del ckpt[["config", "feature_params", "model_state"][int(rng.integers(0, 3))]]
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def mutants(path: Path, n: int, rng, retype) -> list[tuple[str, bytes]]:
    blob = path.read_bytes()
    out = []
    for i in range(n):
        how = ("truncate", "flip", "retype")[i % 3]
        data = truncate(blob, rng) if how == "truncate" else flip(blob, rng) if how == "flip" else retype(path, rng)
        out.append((how, data))
    return out


# --- running -----------------------------------------------------------------------------------

def run(argv: list[str]) -> tuple[int | str, str]:
    """(exit status, or 'traceback'; the last line of stderr or the exception)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    except BaseException as exc:  # noqa: BLE001  (what we count)
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return "traceback", f"{type(exc).__name__}: {exc} ({where.filename}:{where.lineno})"
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


def digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []):
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def case_dir(root: Path, good: dict, i: int) -> dict[str, Path]:
    """A fresh copy of the good data dir (and no cache) for one damaged file."""
    base = root / f"case{i:04d}"
    shutil.copytree(good["data"], base / "training_data")
    shutil.copy(good["segments"], base / "cut_segments.json")
    shutil.copy(good["checkpoint"], base / "best.pt")
    shutil.copy(good["mp3"], base / "raw.mp3")
    d = base / "training_data"
    return {"base": base, "data": d, "cache": base / "cache", "raw": d / "input" / "a_raw.wav",
            "edit": d / "desired_output" / "a_edit.wav", "mp3": base / "raw.mp3",
            "pointers": d / "pointer_sequences" / "a_pointers.npy",
            "ops": d / "pointer_sequences" / "a_ops.npy", "info": d / "pointer_sequences" / "a_info.json",
            "segments": base / "cut_segments.json", "checkpoint": base / "best.pt"}


def commands(kind: str, c: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """The commands that read a damaged file of this kind, and their arguments."""
    out = c["base"] / "out"
    data, cache = ["--data-dir", str(c["data"])], ["--cache-dir", str(c["cache"])]
    if kind in ("raw", "edit"):
        cmds = [("prepare", ["prepare", *data, *cache])]
        if kind == "raw":
            cmds += [("edit", ["edit", str(c["raw"]), "-o", str(out / "e.wav"), "--keep", "0.5", "--no-review"]),
                     ("render", ["render", str(c["raw"]), "--segments", str(c["segments"]),
                                 "-o", str(out / "r.flac")])]
        return cmds
    if kind == "mp3":
        return [("edit", ["edit", str(c["mp3"]), "-o", str(out / "e.wav"), "--keep", "0.5", "--no-review"]),
                ("render", ["render", str(c["mp3"]), "--segments", str(c["segments"]), "-o", str(out / "r.ogg")])]
    if kind in ("pointers", "ops", "info"):  # prepare last: it aligns the pair again
        return [("render", ["render", str(c["raw"]), "--pointers", str(c["pointers"]), "-o", str(out / "p.wav")]),
                ("evaluate", ["evaluate", *data, *cache, "--no-baseline", "--checkpoint", str(c["checkpoint"]), "a"]),
                ("prepare", ["prepare", *data, *cache])]
    return [("edit", ["edit", str(c["raw"]), "-o", str(out / "e.wav"), "--checkpoint", str(c["checkpoint"]),
                      "--target-duration", "8", "--no-review"]),
            ("evaluate", ["evaluate", *data, *cache, "--no-baseline", "--checkpoint", str(c["checkpoint"]), "a"])]


def main_bench() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=40, help="damaged files of each kind (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.time()
    outcomes: dict[str, Counter] = defaultdict(Counter)
    changed, tracebacks, files = [], [], 0
    with tempfile.TemporaryDirectory(prefix="bench_fuzz_") as tmp:
        root = Path(tmp)
        good = make_good(root)
        retypes = {"raw": retype_audio, "edit": retype_audio, "mp3": lambda p, r: flip(p.read_bytes(), r),
                   "pointers": retype_npy, "ops": retype_npy, "info": lambda p, r: json.dumps(
                       dict(json.loads(p.read_text()), edit_frames=-5, raw_frames="x")).encode(),
                   "checkpoint": retype_checkpoint}
        i = 0
        for kind, retype in retypes.items():
            for how, blob in mutants(good[kind], args.per_kind, rng, retype):
                c = case_dir(root, good, i)
                i += 1
                files += 1
                c[kind].write_bytes(blob)
                for name, argv in commands(kind, c):
                    inputs = [c["data"] / "input", c["data"] / "desired_output", c["segments"],
                              c["checkpoint"], c["mp3"]]
                    if name != "prepare":  # prepare replaces damaged pointer files: the fix
                        inputs.append(c["data"] / "pointer_sequences")
                    before = digest(inputs)
                    code, last = run(argv)
                    outcome = code if code in (0, 2) else "traceback"
                    outcomes[name][outcome] += 1
                    if outcome == "traceback":
                        tracebacks.append(f"{name} {kind}/{how}: {last}")
                    after = digest(inputs)
                    changed += [f"{name}: {f}" for f, h in before.items() if after.get(f) != h]
                shutil.rmtree(c["base"])
    seconds = time.time() - started
    runs = sum(sum(v.values()) for v in outcomes.values())
    print(f"| command | runs | exit 0 | exit 2 | tracebacks |")
    print(f"|---|---|---|---|---|")
    for name in ("prepare", "edit", "render", "evaluate"):
        o = outcomes[name]
        print(f"| {name} | {sum(o.values())} | {o[0]} | {o[2]} | {o['traceback']} |")
    print(f"\n{files} damaged files, {runs} runs, {len(tracebacks)} tracebacks, "
          f"{len(changed)} input files changed, {seconds:.0f} s")
    for line in tracebacks[:20]:
        print("  traceback:", line)
    for f in changed[:20]:
        print("  changed:", f)
    if args.json:
        Path(args.json).write_text(json.dumps({"files": files, "runs": runs, "tracebacks": tracebacks,
                                               "changed": changed, "seconds": seconds,
                                               "outcomes": {k: dict(v) for k, v in outcomes.items()}},
                                              indent=1, default=str))
    return 1 if tracebacks or changed else 0


if __name__ == "__main__":
    sys.exit(main_bench())
