"""Codec throughput: kurastore.erasure next to raw zfec, xxhash and md5, in one run.

    python bench/codec.py [--runs N] [--stripes N] [--min-time S]

For 4+2 and 8+3 with 1 MiB stripes, single thread and with a 2-thread pool, prints MiB/s of
object data (medians of --runs interleaved runs) for:
  encode     encode_stripe: parity + k+m checksummed frames (bytes)
  encode/p   encode_stripe_parts: the same without joining header and payload
  decode     m data blocks lost: verify_frame on k frames + decode_stripe (zfec rebuild)
  fast read  all data frames present: verify_frame on k frames + decode_stripe (no decode)
and the ratio to raw zfec encode (parity only) or decode (rebuild m blocks) measured
alongside. Targets: encode >= 90% of raw zfec encode, decode >= 80% of raw zfec decode.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zfec

# Run as a script (python bench/codec.py): PYTHONSAFEPATH keeps bench/ off sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _limits
from _limits import MIB, Variant, Work, in_pool, paired_ratio, sample_rates

from kurastore.erasure import (
    ErasureParams,
    decode_stripe,
    encode_stripe,
    encode_stripe_parts,
    verify_frame,
)

GEOMETRIES = [(4, 2), (8, 3)]
TARGETS = {"encode": 0.90, "encode/p": 0.90, "decode": 0.80}
BASELINES = {  # each codec operation and the raw zfec work it is compared with
    "encode": "zfec encode",
    "encode/p": "zfec encode",
    "decode": "zfec decode",
    "fast read": "zfec decode",
}


def codec_tasks(params: ErasureParams, stripes: list[list[memoryview]]) -> dict[str, list[Work]]:
    k, m = params.k, params.m
    datas = [memoryview(b"".join(blocks)) for blocks in stripes]
    frames = [encode_stripe(params, s, d) for s, d in enumerate(datas)]

    def encode(s: int, d: memoryview) -> Work:
        return lambda: encode_stripe(params, s, d)

    def encode_parts(s: int, d: memoryview) -> Work:
        return lambda: encode_stripe_parts(params, s, d)

    def read(s: int, indices: range) -> Work:
        def work() -> bytes:
            got = [verify_frame(frames[s][i], index=i, stripe=s, params=params) for i in indices]
            return decode_stripe(params, got)

        return work

    return {
        "encode": [encode(s, d) for s, d in enumerate(datas)],
        "encode/p": [encode_parts(s, d) for s, d in enumerate(datas)],
        "decode": [read(s, range(m, k + m)) for s in range(len(datas))],
        "fast read": [read(s, range(k)) for s in range(len(datas))],
    }


def serial(tasks: list[Work]) -> Work:
    def work() -> None:
        for task in tasks:
            task()

    return work


def measure(
    k: int, m: int, count: int, runs: int, min_time: float, pool: ThreadPoolExecutor
) -> dict[str, list[tuple[float, float]]]:
    params = ErasureParams.for_stripe(k, m)
    stripes = _limits.zfec_stripes(k, m, params.stripe_size, count)
    nbytes = params.stripe_size * count
    groups = codec_tasks(params, stripes)
    groups["zfec encode"] = _limits.raw_zfec_encode(k, m, stripes)
    groups["zfec decode"] = _limits.raw_zfec_decode(k, m, stripes)
    variants: dict[str, Variant] = {}
    for name, tasks in groups.items():
        variants[f"{name}/1"] = (serial(tasks), nbytes, time.thread_time)
        variants[f"{name}/2"] = (in_pool(pool, tasks), nbytes, time.perf_counter)
    return sample_rates(variants, runs, min_time)


def codec_table(args: argparse.Namespace) -> list[str]:
    """Print the codec rows; return the targets missed."""
    print(f"codec, 1 MiB stripes, {args.stripes} stripes per run, median of {args.runs} runs")
    print("(1 thread: CPU time of the thread; 2 threads: wall time, 2-thread pool; ratio:")
    print(" median of run-by-run ratios to raw zfec measured alongside; faults: page faults")
    print(" per MiB of object data, ours / raw zfec's)")
    print(
        f"{'geometry':<9}{'op':<11}{'threads':>7}{'MiB/s':>9}{'raw zfec':>10}{'ratio':>7}"
        f"{'faults':>13}"
    )
    misses = []
    with ThreadPoolExecutor(2) as pool:
        for k, m in GEOMETRIES:
            samples = measure(k, m, args.stripes, args.runs, args.min_time, pool)
            for threads in (1, 2):
                for op, raw in BASELINES.items():
                    ours, theirs = samples[f"{op}/{threads}"], samples[f"{raw}/{threads}"]
                    ratio = paired_ratio([r for r, _ in ours], [r for r, _ in theirs])
                    faults = f"{_median(ours, 1):.0f} / {_median(theirs, 1):.0f}"
                    print(
                        f"{k}+{m:<7}{op:<11}{threads:>7}{_median(ours, 0):>9.0f}"
                        f"{_median(theirs, 0):>10.0f}{ratio:>7.2f}{faults:>13}"
                    )
                    target = TARGETS.get(op)
                    if threads == 1 and target and ratio < target:
                        misses.append(f"{k}+{m} {op}: {ratio:.2f} < {target:.2f}")
    return misses


def _median(samples: list[tuple[float, float]], field: int) -> float:
    return statistics.median(sample[field] for sample in samples)


def limits_table(args: argparse.Namespace) -> None:
    print("\nlimits, single thread (MiB/s, CPU time): one buffer hashed over and over")
    sizes = {"64 MiB": 64 * MIB, "256 KiB": 256 << 10, "64 KiB": 64 << 10}
    rates = {label: _limits.hash_rates(size, runs=max(5, args.runs // 2)) for label, size
             in sizes.items()}
    print(f"{'hash':<9}" + "".join(f"{label:>10}" for label in sizes))
    for name in _limits.HASHES:
        print(f"{name:<9}" + "".join(f"{rates[label][name]:>10.0f}" for label in sizes))

    print("\nGIL: a Python thread's CPU time while another calls the function back to back")
    print("(relative to the caller's; ~1: the function releases the GIL, ~0: it holds it)")
    sizes = {"64 MiB": 64 * MIB, "256 KiB": 256 << 10, "64 KiB+64": (64 << 10) + 64,
             "64 KiB": 64 << 10}
    bufs = {label: memoryview(bytes(size)) for label, size in sizes.items()}
    fns = {**_limits.HASHES, "bytes()": bytes}  # bytes(): a plain copy, holds the GIL
    print(f"{'call':<12}" + "".join(f"{label:>11}" for label in sizes))
    for name, fn in fns.items():
        cells = [_limits.gil_free_share(fn, (bufs[label],)) for label in sizes]
        print(f"{name:<12}" + "".join(f"{cell:>11.2f}" for cell in cells))
    for k, m in GEOMETRIES:
        blocks = tuple(_limits.zfec_stripes(k, m, 1 << 20, 1)[0])
        encoder = zfec.Encoder(k, k + m)
        share = _limits.gil_free_share(encoder.encode, (blocks, tuple(range(k, k + m))))
        print(f"{f'zfec {k}+{m}':<12}{share:>11.2f}  (1 MiB stripe)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--stripes", type=int, default=16, help="1 MiB stripes per run")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per run")
    parser.add_argument(
        "--tune-malloc", action="store_true", help="keep freed memory in the process (glibc)"
    )
    args = parser.parse_args()
    if args.tune_malloc:
        print(f"malloc tuned: {_limits.tune_malloc()}")
    misses = codec_table(args)
    limits_table(args)
    print("\ntargets (1 thread): " + ("all met" if not misses else "MISSED " + "; ".join(misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
