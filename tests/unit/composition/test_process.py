"""Process-wide memory settings: buffers freed by the data path are kept for reuse, and
what malloc holds free beyond a bound is given back to the kernel."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# In a process of its own: the test process's heap is pytest's.
SCRIPT = textwrap.dedent("""
    import asyncio, json, os
    from kurastore.process import free_heap_bytes, keep_heap_trimmed, tune_malloc

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    MiB = 1 << 20
    assert tune_malloc()
    # 300 stripe-sized buffers; every other one freed: the free memory sits between live
    # buffers, where freeing never gives it back.
    bufs = [bytearray(os.urandom(16)) * (MiB // 16) for _ in range(300)]
    kept = bufs[1::2]
    del bufs
    before, free = rss(), free_heap_bytes()

    async def keeper_runs_once():
        task = asyncio.create_task(keep_heap_trimmed(kept=64 * MiB, every_s=0.05))
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(keeper_runs_once())
    intact = all(len(b) == MiB and b[:16] * (MiB // 16) == b for b in kept)
    print(json.dumps({"before": before, "free": free, "after": rss(),
                      "free_after": free_heap_bytes(), "intact": intact}))
""")


def test_free_heap_beyond_the_bound_goes_back_to_the_kernel() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(out.stdout)
    MiB = 1 << 20
    assert got["free"] >= 140 * MiB, got  # tune_malloc kept the freed buffers
    assert got["before"] - got["after"] >= 100 * MiB, got  # the keeper gave them back
    assert got["intact"], "live buffers untouched"
