"""`python -m kurastore.storage` / `kurastore pod`: run one storage pod.

    python -m kurastore.storage --data DIR --listen HOST:PORT --secret-file PATH
                                [--pod-id ID] [--capacity-bytes N] [--config FILE.toml]

Settings come from, lowest precedence first: the `[pod]` table of the TOML file, the
KURASTORE_POD_* environment variables (DATA, LISTEN, SECRET_FILE, ID, CAPACITY_BYTES), the
command line. This is the only module of the package that reads the environment. The
secret is read from a file, never from the command line (it would show in `ps`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

import uvloop

from kurastore.storage._listener import PodListener
from kurastore.storage.config import PodConfig
from kurastore.storage.server import build_pod_app

__all__ = ["load_config", "main"]

_ENV = {
    "KURASTORE_POD_DATA": "data",
    "KURASTORE_POD_LISTEN": "listen",
    "KURASTORE_POD_SECRET_FILE": "secret_file",
    "KURASTORE_POD_ID": "pod_id",
    "KURASTORE_POD_CAPACITY_BYTES": "capacity_bytes",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kurastore pod", description="Run one storage pod.")
    p.add_argument("--config", help="TOML file with a [pod] table")
    p.add_argument("--data", help="data directory (the pod's volume)")
    p.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:9101)")
    p.add_argument("--secret-file", help="file holding the cluster secret")
    p.add_argument("--pod-id", help="name used in logs and metrics")
    p.add_argument("--capacity-bytes", type=int, help="quota: answer 507 above this many bytes")
    p.add_argument("--log-level", default=os.environ.get("KURASTORE_LOG_LEVEL", "INFO"))
    return p


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_config(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> PodConfig:
    """Merge TOML, environment and command line into one PodConfig."""
    args = _parser().parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        with open(args.config, "rb") as f:
            values.update(tomllib.load(f).get("pod", {}))
    for var, key in _ENV.items():
        if var in environ:
            values[key] = environ[var]
    cli = {
        "data": args.data,
        "listen": args.listen,
        "secret_file": args.secret_file,
        "pod_id": args.pod_id,
        "capacity_bytes": args.capacity_bytes,
    }
    values.update({k: v for k, v in cli.items() if v is not None})
    if "data" in values:
        values["data_dir"] = values.pop("data")
    if "listen" in values:
        values["host"], values["port"] = _split_listen(str(values.pop("listen")))
    if "capacity_bytes" in values:
        values["capacity_bytes"] = int(values["capacity_bytes"])
    if "data_dir" not in values or ("secret_file" not in values and "secret" not in values):
        raise ValueError("a pod needs --data and --secret-file")
    return PodConfig.from_mapping(values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a pod until SIGINT/SIGTERM; return the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(argv)
    except (ValueError, OSError) as exc:
        print(f"kurastore pod: {exc}", file=sys.stderr)
        return 2
    level = _parser().parse_args(argv).log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvloop.run(_serve(config))
    return 0


async def _serve(config: PodConfig) -> None:
    """Serve until SIGINT or SIGTERM, then finish requests in flight and close the store."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listener = PodListener(build_pod_app(config), config.host, config.port,
                           config.shutdown_timeout_s)
    await listener.start()
    try:
        await stop.wait()
    finally:
        await listener.stop()


if __name__ == "__main__":
    sys.exit(main())
