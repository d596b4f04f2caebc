"""RL environment speed: beat-feature extraction per minute of audio, and environment
steps per second with 1 worker and with 2 subprocess workers.

    .venv/bin/python benchmarks/bench_rl_env.py [--minutes 5] [--steps 4000]

Feature extraction runs in a fresh process on a cold cache (decode, beat tracking, 121
features, offline hpss stems, cache write), and again without stems to show their share.
Steps use uniformly random valid actions on the same recording; the 2-worker figure is
stable-baselines3's SubprocVecEnv (forkserver) stepping both workers and fetching their
masks every step, as MaskablePPO does. No issue target: figures for scale.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from common import OUT, long_wav, measure

COLD = """
import sys, time
from editorbot.rl.beat_features import beat_features
t, c = time.perf_counter(), time.process_time()
bf = beat_features(sys.argv[1], cache_dir=sys.argv[2])
result = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
          "beats": bf.n_beats, "tempo": bf.tempo_bpm, "stems": bf.stems_source}
"""

NO_STEMS = """
import sys, time
from editorbot.audio import load_analysis
from editorbot.rl.beat_features import compute_beat_features
t, c = time.perf_counter(), time.process_time()
y = load_analysis(sys.argv[1])
decode = time.perf_counter() - t
bf = compute_beat_features(y)
result = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
          "decode_seconds": decode}
"""


def steps_one_worker(env, n_steps: int, rng: np.random.Generator) -> tuple[float, int]:
    from editorbot.rl.actions import sample_valid
    obs, info = env.reset(seed=0)
    episodes = 0
    started = time.perf_counter()
    for _ in range(n_steps):
        obs, r, term, trunc, info = env.step(sample_valid(info["action_mask"], rng))
        if term or trunc:
            episodes += 1
            obs, info = env.reset()
    return n_steps / (time.perf_counter() - started), episodes


def steps_subprocess(fns, n_steps: int, rng: np.random.Generator, *, masks: bool) -> float:
    from editorbot.rl.env import make_vec_env
    venv = make_vec_env(fns, subprocess=True)
    try:
        venv.reset()
        started = time.perf_counter()
        for _ in range(n_steps // len(fns)):
            if masks:
                heads = np.stack(venv.env_method("action_masks"))
                actions = np.stack([[rng.choice(np.flatnonzero(m[o:o + n]))
                                     for o, n in ((0, 20), (20, 5), (25, 5))] for m in heads])
            else:
                actions = np.stack([venv.action_space.sample() for _ in fns])
            venv.step(actions)
        elapsed = time.perf_counter() - started
    finally:
        venv.close()
    return (n_steps // len(fns)) * len(fns) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    wav = long_wav(OUT / f"long_{args.minutes:g}min.wav", args.minutes)
    print(f"input: {wav} ({args.minutes:g} min, 44.1 kHz stereo PCM_16)")
    with tempfile.TemporaryDirectory() as tmp:
        cold = measure(COLD, str(wav), tmp)
        bare = measure(NO_STEMS, str(wav))
        print(f"beat features, cold cache, with hpss stems: {cold['seconds']:.1f} s = "
              f"{cold['seconds'] / args.minutes:.2f} s per minute of audio, CPU "
              f"{cold['cpu_seconds'] / args.minutes:.2f} s per minute "
              f"({cold['beats']} beats at {cold['tempo']:.1f} bpm; stems: {cold['stems']}; "
              f"peak RSS {cold['peak_rss_mb']:.0f} MB)")
        print(f"beat features without stems: {bare['seconds']:.1f} s = "
              f"{bare['seconds'] / args.minutes:.2f} s per minute, CPU "
              f"{bare['cpu_seconds'] / args.minutes:.2f} s per minute (decode+resample "
              f"{bare['decode_seconds']:.1f} s of it)")

        from editorbot.features import DEFAULT_PARAMS
        from editorbot.rl.beat_features import beat_features
        from editorbot.rl.env import EditEnv, env_fn
        t = time.perf_counter()
        beat_features(wav, cache_dir=tmp)
        print(f"beat features from the cache: {time.perf_counter() - t:.3f} s")
        rng = np.random.default_rng(0)
        env = EditEnv(wav, cache_dir=tmp, params=DEFAULT_PARAMS)
        rate, episodes = steps_one_worker(env, args.steps, rng)
        print(f"1 worker (in process): {rate:.0f} steps/s over {args.steps} steps "
              f"({episodes} episodes of a {env.n_beats}-beat recording)")
        fns = [env_fn(wav, cache_dir=tmp, params=DEFAULT_PARAMS) for _ in range(2)]
        rate2 = steps_subprocess(fns, args.steps, rng, masks=True)
        print(f"2 subprocess workers (SubprocVecEnv, masks fetched each step): "
              f"{rate2:.0f} steps/s in total")
        rate2 = steps_subprocess(fns, args.steps, rng, masks=False)
        print(f"2 subprocess workers (SubprocVecEnv, step only, unmasked random actions): "
              f"{rate2:.0f} steps/s in total")


if __name__ == "__main__":
    main()
