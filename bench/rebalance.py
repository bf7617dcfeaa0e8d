"""Benchmark: rebalancing a real `kurastore server` from 6 to 7 pods (erasure 4+2).

    python bench/rebalance.py [--runs 3] [--quick] [--mib 1024] [--objects mixed|large]

For each run and each throttle (the server's default --rebalance-rate, then 0:
unthrottled; the order alternates between runs) it starts a fresh `kurastore server`
(6 pods, --rebalance-grace 5 so the old copies are gone before the shards are counted),
loads --mib MiB of objects (--objects mixed: 4 KiB to 32 MiB; large: mostly 32 MiB),
syncs, and runs a steady background client (--rate requests/s, in turn: a 256 KiB PUT,
a 256 KiB GET of a loaded object checked byte-exact, GET /_kura/healthz).
It measures the client's latency for a while, adds one pod (POST /pods, what
`kurastore admin pods add` does) and polls GET /rebalance until it reports done.
Printed, as medians over --runs (latencies pooled over the runs):
- MiB moved (bytes written to new pods, as the rebalancer reports them), elapsed from
  the add to done, MiB/s, the peak rate the progress reported, server CPU (gateway +
  pods, /proc) and the machine's load average;
- the moved share: MiB moved / MiB of shards stored, and shard files counted on disk
  per pod before and after (a shard has moved when a pod not holding it before holds
  it after), against the ideal 1/7;
- client p50/p99 before and during (and split: adding the pod, until the first byte
  moved, copying), errors, and the slowest requests with their time after the add;
- beside it, measured in the same run: a standalone pod's shard PUT/GET MiB/s, raw
  disk write+fsync and aiohttp loopback (bench/pod.py's Bench).
The throttle counts pod bytes read plus written, so a rate limit L lets about L/2
bytes per second be moved; "throttle use" is 2 x moved / (L x copying s + L), the
budget used from the first byte moved to done (1: the throttle binds; above: exceeded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from kurastore.gateway.admin.client import AdminClient
from kurastore.storage import ShardStore

# Run as a script (python bench/rebalance.py): PYTHONSAFEPATH keeps bench/ off sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pod as podbench
from _steady_client import (
    LARGE,
    MIXED,
    OPS,
    Bodies,
    SteadyClient,
    data_set,
    load,
    percentile,
)
from s3_server import (
    ACCESS,
    SECRET,
    Signer,
    cpu_seconds,
    free_port,
    start_server,
    tree_pids,
)

MiB = 1 << 20
MODES = {"default throttle": (), "unthrottled": ("--rebalance-rate", "0")}
DURING = ("adding pod", "until 1st byte", "copying")  # from the add to done


@dataclass
class Case:
    """One rebalance, 6 -> 7 pods, as measured."""

    mode: str
    figures: dict[str, float] = field(default_factory=dict)
    before_pods: Counter[str] = field(default_factory=Counter)
    after_pods: Counter[str] = field(default_factory=Counter)
    lat: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    t_add: float = 0.0  # perf_counter when the pod was added
    slowest: list[tuple[float, float, str]] = field(default_factory=list)  # took, +s, op
    notes: list[str] = field(default_factory=list)


# --- shards on disk ------------------------------------------------------------------------

def census(data: Path) -> dict[str, dict[str, int]]:
    """'partition/object_id/tag.index' -> {pod id: file size} for every shard file, as
    each pod's own listing finds them (an old copy deleted meanwhile is skipped)."""
    found: dict[str, dict[str, int]] = {}
    for pod_dir in sorted((data / "pods").glob("pod-*")):
        store = ShardStore(pod_dir)
        try:
            for partition in store.list_partitions() if store.shards_dir.is_dir() else []:
                for info in store.list_partition(partition):
                    name = f"{partition}/{info.shard.object_id}/{info.shard.file_name}"
                    found.setdefault(name, {})[pod_dir.name] = info.size
        finally:
            store.close()
    return found


def per_pod(shards: dict[str, dict[str, int]], keys: set[str]) -> Counter[str]:
    return Counter(p for k in keys for p in shards[k])


def moved(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
          ) -> tuple[set[str], int, Counter[str], int]:
    """(shards present before and after, bytes stored of those, destination pod -> shards
    that moved to a pod not holding them before, their bytes)."""
    kept = set(before) & set(after)
    stored = sum(sum(before[k].values()) for k in kept)
    dest: Counter[str] = Counter()
    size = 0
    for key in kept:
        for pod_id in after[key].keys() - before[key].keys():
            dest[pod_id] += 1
            size += after[key][pod_id]
    return kept, stored, dest, size


# --- one rebalance ---------------------------------------------------------------------------

async def rebalance_case(args: argparse.Namespace, mode: str, root: Path) -> Case:
    case = Case(mode)
    data, port = root / "data", free_port()
    try:
        proc = start_server(data, port, ["--rebalance-grace", "5", *MODES[mode]])
    except RuntimeError:
        print((root / "server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    endpoint = f"http://127.0.0.1:{port}"
    signer = Signer(endpoint)
    objects = data_set(args.mib, LARGE if args.objects == "large" else MIXED)
    bodies = Bodies(max(size for _, size in objects))
    stop = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=32)
    try:
        async with aiohttp.ClientSession(connector=conn) as session, \
                AdminClient(endpoint, ACCESS, SECRET) as admin:
            async with session.put(endpoint + "/bench",
                                   headers=signer.headers("PUT", "/bench")) as r:
                assert r.status == 200, await r.text()
            loaded = sum(size for _, size in objects)
            took = await load(session, signer, bodies, objects)
            case.figures["load PUT MiB/s"] = loaded / MiB / took
            case.figures["objects MiB"] = loaded / MiB
            # Both modes start with the load's dirty pages on disk, not left to writeback.
            sync_start = time.monotonic()
            await asyncio.to_thread(os.sync)
            case.figures["sync after load s"] = time.monotonic() - sync_start
            before = census(data)
            client = SteadyClient(session, signer, bodies, objects, args.rate)
            background = asyncio.create_task(client.run(stop))
            client.phase = "before"
            await asyncio.sleep(args.before_s)
            await watch_rebalance(admin, proc.pid, case, client)
            stop.set()
            await background
            case.figures["skipped ticks"] = client.skipped
            await wait_old_copies(admin, case)
            after = census(data)
            for phase, s in client.phases.items():
                case.lat[phase], case.errors[phase] = s.lat, s.errors
            during = [client.samples(ph) for ph in DURING]
            case.lat["during"] = {op: [x for s in during for x in s.lat[op]] for op in OPS}
            case.errors["during"] = [e for s in during for e in s.errors]
            case.slowest = sorted(((took, start - case.t_add, op) for s in during
                                   for start, op, took in s.trace), reverse=True)[:6]
        kept, stored, dest, size = moved(before, after)
        case.before_pods, case.after_pods = per_pod(before, kept), per_pod(after, kept)
        new_pods = set(case.after_pods) - set(case.before_pods)
        count = sum(dest.values())
        case.figures |= {
            "stored shard MiB": stored / MiB, "shards": len(kept), "disk moved shards": count,
            "disk moved MiB": size / MiB, "moved share (disk, shards)": count / len(kept),
            "moved between old pods": sum(n for p, n in dest.items() if p not in new_pods),
            "moved share (disk, bytes)": size / stored,
            "moved share (reported bytes)": case.figures["moved MiB"] * MiB / stored,
        }
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return case


async def watch_rebalance(admin: AdminClient, server_pid: int, case: Case,
                          client: SteadyClient) -> None:
    """Adds one pod and polls the progress every 0.25 s until it reports done; files the
    client's requests under the phase they started in (DURING)."""
    f = case.figures
    start_progress = await admin.rebalance()
    moved0 = start_progress["bytes_moved"]
    cpu0, gw0 = cpu_seconds(tree_pids(server_pid)), cpu_seconds([server_pid])
    t0 = time.monotonic()
    case.t_add = time.perf_counter()
    client.phase = "adding pod"
    added = await admin.add_pods(count=1)
    f["add s"] = time.monotonic() - t0
    client.phase = "until 1st byte"
    first_byte = planned = None
    peak_rate, eta_seen, load_avg = 0.0, False, []
    while True:
        p = await admin.rebalance()
        now = time.monotonic()
        if p["bytes_moved"] > moved0 and first_byte is None:
            first_byte = now - t0
            client.phase = "copying"
        if planned is None and p["bytes_left"] > 0:
            planned = p["bytes_left"]
        peak_rate = max(peak_rate, p["rate_bytes_s"])
        eta_seen = eta_seen or p["eta_s"] not in (None, 0.0)
        load_avg.append(os.getloadavg()[0])
        if p["done"] and p["target_epoch"] >= added["epoch"]:
            break
        if now - t0 > 1800:
            raise RuntimeError(f"rebalance not done after 30 min: {p}")
        await asyncio.sleep(0.25)
    client.phase = None
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(tree_pids(server_pid)) - cpu0
    gateway_cpu = cpu_seconds([server_pid]) - gw0
    moved_bytes = p["bytes_moved"] - moved0
    limit = float(p["rate_limit_bytes_s"])
    f |= {
        "rate limit MiB/s": limit / MiB, "moved MiB": moved_bytes / MiB, "elapsed s": elapsed,
        "MiB/s": moved_bytes / MiB / elapsed,
        "MiB/s after first byte": moved_bytes / MiB / max(1e-9, elapsed - (first_byte or 0)),
        "first byte after s": first_byte or float("nan"),
        "peak reported MiB/s": peak_rate / MiB, "server CPU %": 100 * cpu / elapsed,
        "gateway CPU %": 100 * gateway_cpu / elapsed,
        "load avg (1 min)": statistics.mean(load_avg),
        "shards rebuilt": p["shards_rebuilt"], "partitions moved": p["partitions_moved"],
        "passes": p["passes"],
    }
    if limit > 0:  # pod bytes read + written while copying against the budget (+ 1 s burst)
        copying = elapsed - (first_byte or 0)
        f["throttle use (copying)"] = 2 * moved_bytes / (limit * copying + limit)
    if planned is None:
        case.notes.append("progress never showed bytes_left > 0")
    else:
        f["planned MiB"] = planned / MiB
    if not eta_seen:
        case.notes.append("progress never showed an ETA")
    if p["last_error"]:
        case.notes.append(f"last_error: {p['last_error']}")


async def wait_old_copies(admin: AdminClient, case: Case, timeout_s: float = 60) -> None:
    """Waits for the old copies' grace to pass and the rebalancer to delete them."""
    deadline = time.monotonic() + timeout_s
    while (p := await admin.rebalance())["old_copies_waiting"]:
        if time.monotonic() > deadline:
            case.notes.append(f"{p['old_copies_waiting']} old copies still waiting")
            return
        await asyncio.sleep(0.5)


# --- the pods' raw throughput ----------------------------------------------------------------

async def pod_raw(quick: bool) -> dict[int, dict[str, float]]:
    """bench/pod.py's large-shard figures (1 MiB and 8 MiB shards) on a standalone pod."""
    workdir = Path(tempfile.mkdtemp(prefix="kura-bench-rebalance-pod-"))
    pod_port, raw_port = free_port(), free_port()
    procs = await asyncio.to_thread(podbench.spawn, workdir, pod_port, raw_port)
    bench = podbench.Bench(workdir, f"http://127.0.0.1:{pod_port}",
                           f"http://127.0.0.1:{raw_port}")
    sizes = {MiB: 32, 8 * MiB: 4} if quick else {MiB: 96, 8 * MiB: 12}
    try:
        await podbench.wait_ready(bench.pod_url, "/readyz")
        await podbench.wait_ready(bench.raw_url, "/blob/1")
        return {size: await bench.large(size, count, 3 if quick else 5)
                for size, count in sizes.items()}
    finally:
        await bench.close()
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# --- report ----------------------------------------------------------------------------------

def report(cases: dict[str, list[Case]], raw: dict[int, dict[str, float]], runs: int) -> None:
    print(f"\nrebalance 6 -> 7 pods (4+2), medians of {runs} run(s); {os.cpu_count()} cores, "
          f"shared")
    modes = list(cases)
    keys = [k for k in cases[modes[0]][0].figures if k in cases[modes[-1]][0].figures]
    keys += [k for m in modes for k in cases[m][0].figures if k not in keys]
    print(f"  {'':30s}" + "".join(f"{m:>18s}" for m in modes))
    for key in keys:
        row = []
        for m in modes:
            vals = [c.figures[key] for c in cases[m] if key in c.figures]
            row.append(f"{statistics.median(vals):>18.3f}" if vals else f"{'-':>18s}")
        print(f"  {key:30s}" + "".join(row))
    print(f"  {'ideal moved share':30s}{1 / 7:>18.3f}")
    print("\nclient latency, ms, pooled over runs: p50 / p99 (samples); PUT and GET of 256 KiB "
          "objects, healthz: the gateway's event loop alone")
    for m in modes:
        for phase in ("before", "during", *DURING):
            parts = []
            for op in OPS:
                lat = [x for c in cases[m] for x in c.lat.get(phase, {}).get(op, [])]
                parts.append(f"{op} {percentile(lat, 0.5) * 1e3:6.1f} /"
                             f"{percentile(lat, 0.99) * 1e3:7.1f} ({len(lat):>3})")
            errors = [e for c in cases[m] for e in c.errors.get(phase, [])]
            print(f"  {m:16s} {phase:14s} " + "  ".join(parts) + f"  errors {len(errors)}")
            for e in errors[:3]:
                print(f"      {e}")
        slow = ", ".join(f"{op} {took * 1e3:.0f} ms at +{at:.1f} s"
                         for took, at, op in cases[m][0].slowest)
        print(f"  {m}, slowest during the first run (start after the add): {slow}")
    print("\nshard files per pod (first run; moved shards' old copies deleted after grace)")
    for m in modes:
        c = cases[m][0]
        pods = sorted(c.after_pods, key=lambda p: int(p.rsplit("-", 1)[1]))
        total = sum(c.after_pods.values())
        print(f"  {m}: ideal after {total / 7:.0f} each")
        print("    before " + " ".join(f"{p}={c.before_pods[p]}" for p in pods))
        print("    after  " + " ".join(f"{p}={c.after_pods[p]}" for p in pods))
    for m in modes:
        for i, c in enumerate(cases[m]):
            for note in c.notes:
                print(f"  note ({m}, run {i}): {note}")
    print("\nstandalone pod, one stream, MiB/s (bench/pod.py, same run)")
    print(f"  {'shard':>6} {'disk w+fsync':>12} {'pod PUT':>8} {'loop PUT':>9} "
          f"{'pod GET':>8} {'loop GET':>9} {'disk read':>9}")
    for size, r in raw.items():
        print(f"  {size // MiB:>4}Mi {r['disk_w']:>12.0f} {r['put']:>8.0f} {r['lo_put']:>9.0f} "
              f"{r['get']:>8.0f} {r['lo_get']:>9.0f} {r['disk_r']:>9.0f}")
    print(f"  load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


async def main_async(args: argparse.Namespace) -> None:
    cases: dict[str, list[Case]] = {m: [] for m in MODES}
    base = Path(tempfile.mkdtemp(prefix="kura-bench-rebalance-"))
    try:
        for run in range(args.runs):
            order = list(MODES) if run % 2 == 0 else list(MODES)[::-1]  # no order bias
            for mode in order:
                root = base / f"{run}-{mode.split()[0]}"
                case = await rebalance_case(args, mode, root)
                cases[mode].append(case)
                f = case.figures
                print(f"run {run} {mode}: {f['moved MiB']:.0f} MiB moved in "
                      f"{f['elapsed s']:.1f} s ({f['MiB/s']:.1f} MiB/s), share "
                      f"{f['moved share (disk, bytes)']:.3f}, load {f['load avg (1 min)']:.2f}",
                      flush=True)
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
        raw = await pod_raw(args.quick)
    finally:
        if args.keep:
            print("kept", base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    report(cases, raw, args.runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one run of 384 MiB, 8 s before (under ~5 minutes)")
    parser.add_argument("--mib", type=int, default=1024, help="object data to load")
    parser.add_argument("--objects", choices=["mixed", "large"], default="mixed",
                        help="mixed: 4 KiB to 32 MiB; large: mostly 32 MiB (8 MiB shards)")
    parser.add_argument("--rate", type=float, default=30.0,
                        help="background client requests per second")
    parser.add_argument("--before-s", type=float, default=20.0,
                        help="seconds of client latency measured before the add")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.mib, args.before_s = 1, min(args.mib, 384), min(args.before_s, 8.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
