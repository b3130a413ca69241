#!/usr/bin/env python3
"""Python sentence-transformers baseline for spanline's MiniLM embedder bench.

Measures the same workload as the Rust criterion bench in
`crates/spanline-models/benches/`: sentences from `../data/sentences.txt`,
batch 1 = the first sentence, batch 32 = the first 32 sentences, embedded with
all-MiniLM-L6-v2 (mean pooling, L2-normalised) on the CPU.

How to run (from the repository root):

    python3 -m venv /work/venv-st
    /work/venv-st/bin/pip install sentence-transformers   # from PyPI; torch pulls CUDA wheels (GBs)
    HF_HUB_OFFLINE=1 /work/venv-st/bin/python \
        crates/spanline-models/benches/python/st_bench.py \
        /path/to/all-MiniLM-L6-v2 --threads 1
    # then again with --threads 2

The model path is a local sentence-transformers directory (modules.json,
config.json, model.safetensors, tokenizer.json, 1_Pooling/, ...); nothing is
downloaded. Check the machine is quiet first (`uptime`): the figures are
per-call wall-clock times.

Output: a small table on stdout, a line starting with `JSON ` holding all
figures, plus reference values (cosine similarities, first components of one
embedding) for checking the Rust embedder's numerical agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

DEFAULT_SENTENCES = Path(__file__).resolve().parent.parent / "data" / "sentences.txt"
REF_A = "A man is eating food."
REF_B = "A man is eating a piece of bread."
REF_C = "The new movie is awful."


def percentile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100], of an ascending list."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def bench(
    model: SentenceTransformer, batch: list[str], warmup: int, iters: int, min_secs: float, max_secs: float
) -> dict:
    """Time `model.encode` on `batch`; returns per-call stats in ms and emb/s."""

    def call() -> np.ndarray:
        return model.encode(
            batch,
            batch_size=len(batch),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    for _ in range(warmup):
        call()
    times: list[float] = []
    cpu_times: list[float] = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if len(times) >= iters and elapsed >= min_secs:
            break
        if elapsed >= max_secs and len(times) >= 30:
            break
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    assert out.shape == (len(batch), 384), out.shape
    times.sort()
    med = statistics.median(times)
    p10 = percentile(times, 10)
    p90 = percentile(times, 90)
    cpu_med = statistics.median(cpu_times)
    n = len(batch)
    return {
        "batch": n,
        "iters": len(times),
        "median_ms": med * 1e3,
        "p10_ms": p10 * 1e3,
        "p90_ms": p90 * 1e3,
        "emb_per_s_median": n / med,
        # Process CPU time (all threads) per call: less sensitive to other load than wall time.
        "cpu_median_ms": cpu_med * 1e3,
        "emb_per_cpu_s_median": n / cpu_med,
        # Faster call (p10 time) = higher throughput, so the emb/s bounds swap.
        "emb_per_s_p90_time": n / p90,
        "emb_per_s_p10_time": n / p10,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="local sentence-transformers model directory (all-MiniLM-L6-v2)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads value (default 1)")
    ap.add_argument("--sentences", type=Path, default=DEFAULT_SENTENCES, help="workload file, one sentence per line")
    ap.add_argument("--batches", default="1,32", help="comma-separated batch sizes (default 1,32)")
    ap.add_argument("--warmup", type=int, default=20, help="warm-up calls per batch size")
    ap.add_argument("--iters", type=int, default=200, help="minimum timed calls per batch size")
    ap.add_argument("--min-secs", type=float, default=10.0, help="minimum timed seconds per batch size")
    ap.add_argument("--max-secs", type=float, default=60.0,
                    help="stop after this many timed seconds even below --iters (once 30 calls are timed)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    sentences = [s for s in args.sentences.read_text(encoding="utf-8").splitlines() if s.strip()]
    batches = [int(b) for b in args.batches.split(",")]
    if max(batches) > len(sentences):
        print(f"need {max(batches)} sentences, file has {len(sentences)}", file=sys.stderr)
        return 2

    model = SentenceTransformer(args.model, device="cpu")
    model.eval()

    ref = model.encode([REF_A, REF_B, REF_C], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    cos_ab = float(np.dot(ref[0], ref[1]))
    cos_ac = float(np.dot(ref[0], ref[2]))
    first5 = [round(float(x), 6) for x in ref[0][:5]]

    load_before = os.getloadavg()
    results = []
    with torch.inference_mode():
        for b in batches:
            results.append(bench(model, sentences[:b], args.warmup, args.iters, args.min_secs, args.max_secs))

    load1, load5, load15 = os.getloadavg()
    print(f"load before run {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"sentence-transformers {__import__('sentence_transformers').__version__}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}, cpus={os.cpu_count()}, load after run {load1:.2f} {load5:.2f} {load15:.2f}")
    print(f"{'batch':>5} {'iters':>6} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'emb/s (median)':>15} {'CPU ms (median)':>16}")
    for r in results:
        print(f"{r['batch']:>5} {r['iters']:>6} {r['median_ms']:>10.3f} {r['p10_ms']:>8.3f} {r['p90_ms']:>8.3f} "
              f"{r['emb_per_s_median']:>15.1f} {r['cpu_median_ms']:>16.3f}")
    print(f"cos({REF_A!r}, {REF_B!r}) = {cos_ab:.6f}")
    print(f"cos({REF_A!r}, {REF_C!r}) = {cos_ac:.6f}")
    print(f"first 5 of emb({REF_A!r}) = {', '.join(f'{x:.6f}' for x in first5)}")
    print("JSON " + json.dumps({
        "impl": "python-sentence-transformers",
        "sentence_transformers": __import__("sentence_transformers").__version__,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "loadavg_before": list(load_before),
        "loadavg_after": [load1, load5, load15],
        "results": results,
        "cos_eating_bread": cos_ab,
        "cos_eating_movie": cos_ac,
        "first5_eating_food": first5,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
