"""The `kurastore` command: server, gateway, pod, admin."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

import uvloop

from kurastore.logs import setup_logging
from kurastore.process import raise_open_files_limit, tune_malloc


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host or "127.0.0.1", int(port)


_RATE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _parse_size(value: str) -> int:
    """A positive byte count, with an optional K, M or G (binary) suffix."""
    try:
        size = int(_parse_rate(value))  # the same number-and-unit syntax as a rate
    except argparse.ArgumentTypeError:
        size = 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"expected a size such as 256M, got {value!r}")
    return size


def _parse_rate(value: str) -> float:
    """Bytes per second: a number with an optional K, M or G (binary) suffix."""
    text = value.strip().upper().removesuffix("/S").removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in "KMG" else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate such as 64M, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("a rate must be >= 0")
    return number * _RATE_UNITS[unit]


def _server(args: argparse.Namespace) -> int:
    from kurastore.server import CannotListen, ServerOptions, run_server

    host, port = args.listen
    opts = ServerOptions(
        data_dir=Path(args.data), pods=args.pods, host=host, port=port,
        region=args.region, domain=args.domain,
        heal_rate_bytes_s=args.heal_rate, scrub_rate_bytes_s=args.scrub_rate,
        scrub_interval_s=args.scrub_interval,
        rebalance_rate_bytes_s=args.rebalance_rate, rebalance_grace_s=args.rebalance_grace,
        rebalance_concurrency=args.rebalance_concurrency,
        orphan_grace_s=args.orphan_grace, lifecycle_day_s=args.lifecycle_day,
        server_log_roll_s=args.access_log_roll,
        **_load_settings(args),
    )
    dsn = _metadata_dsn(args)
    if dsn and dsn.startswith("sqlite://"):
        raise SystemExit("kurastore server: its SQLite metadata lives in --data")
    if dsn:
        opts = dataclasses.replace(opts, metadata_dsn=dsn)
    try:
        uvloop.run(run_server(opts))
    except KeyboardInterrupt:
        pass
    except CannotListen as exc:
        raise SystemExit(f"kurastore server: {exc}") from None
    return 0


def _metadata_dsn(args: argparse.Namespace) -> str | None:
    from kurastore.gateway_cmd import ConfigError, resolve_dsn

    try:
        return resolve_dsn(args.metadata, args.metadata_file, os.environ)
    except (ConfigError, OSError) as exc:
        raise SystemExit(f"kurastore: {exc}") from None


def _gateway(args: argparse.Namespace) -> int:
    from kurastore.gateway_cmd import (
        ConfigError,
        GatewayOptions,
        read_metadata_key,
        read_secret,
        run_gateway,
    )

    dsn = f"sqlite://{Path(args.sqlite).absolute()}" if args.sqlite else _metadata_dsn(args)
    if not dsn:
        raise SystemExit("kurastore gateway: give --metadata, --metadata-file, --sqlite or "
                         "KURASTORE_METADATA_DSN (postgresql://... or sqlite:///path)")
    try:
        secret = read_secret(args.cluster_secret_file, "KURASTORE_CLUSTER_SECRET", os.environ)
        key = read_metadata_key(args.metadata_key_file, os.environ)
    except (ConfigError, OSError) as exc:
        raise SystemExit(f"kurastore gateway: {exc}") from None
    host, port = args.listen
    opts = GatewayOptions(
        metadata_dsn=dsn, cluster_secret=secret, metadata_key=key, host=host, port=port,
        region=args.region, domain=args.domain, erasure=args.erasure,
        root_keys=_root_keys(), rebalance_rate_bytes_s=args.rebalance_rate,
        rebalance_grace_s=args.rebalance_grace,
        rebalance_concurrency=args.rebalance_concurrency, load=_load_settings(args),
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(run_gateway(opts))
    return 0


def _root_keys() -> tuple[str, str] | None:
    """Root's key for a gateway on a fresh store (the operator's admin Secret)."""
    access = os.environ.get("KURASTORE_ACCESS_KEY", "").strip()
    secret = os.environ.get("KURASTORE_SECRET_KEY", "").strip()
    return (access, secret) if access and secret else None


def _operator(args: argparse.Namespace) -> int:
    from kurastore.operator.controller import OperatorOptions, run_operator

    opts = OperatorOptions(namespace=args.namespace, pod_address=args.pod_address,
                           resync_s=args.resync, leader_election=not args.no_leader_election,
                           lease_namespace=args.lease_namespace)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_operator(opts))
    return 0


def _parse_erasure(value: str) -> tuple[int, int]:
    k, sep, m = value.partition("+")
    if not sep or not k.isdigit() or not m.isdigit() or int(k) < 1:
        raise argparse.ArgumentTypeError("expected K+M, e.g. 4+2")
    return int(k), int(m)


def _add_metadata_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", default=None, metavar="DSN",
                   help="PostgreSQL metadata, postgresql://user@host/db "
                        "(also KURASTORE_METADATA_DSN)")
    p.add_argument("--metadata-file", default=None, metavar="PATH",
                   help="read the metadata DSN from this file (a mounted Secret)")


# --flag dest -> its GatewayConfig (and ServerOptions) field.
_LOAD_SETTINGS = {
    "max_in_flight": "max_in_flight_requests", "max_queued": "max_queued_requests",
    "queue_wait": "queue_wait_s", "idle_timeout": "idle_timeout_s",
    "client_timeout": "client_timeout_s", "min_body_rate": "min_body_rate_bytes_s",
    "read_buffer": "read_buffer_bytes", "write_buffer": "write_buffer_bytes",
}


def _load_settings(args: argparse.Namespace) -> dict[str, float]:
    """The overload settings given on the command line, by GatewayConfig field."""
    given = {field: getattr(args, dest) for dest, field in _LOAD_SETTINGS.items()}
    return {field: value for field, value in given.items() if value is not None}


def _add_load_args(p: argparse.ArgumentParser) -> None:
    """Overload and slow-client settings (gateway/admission.py); None: the defaults."""
    p.add_argument("--max-in-flight", type=int, default=None, metavar="N",
                   help="S3/Swift requests served at once (default 256)")
    p.add_argument("--max-queued", type=int, default=None, metavar="N",
                   help="requests waiting for a slot; beyond: 503 SlowDown (default 1024)")
    p.add_argument("--queue-wait", type=float, default=None, metavar="SECONDS",
                   help="how long a request may wait for a slot (default 2)")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="idle keep-alive connections are closed after this (default 30)")
    p.add_argument("--client-timeout", type=float, default=None, metavar="SECONDS",
                   help="window for a too slow body or a client not reading (default 30)")
    p.add_argument("--min-body-rate", type=_parse_rate, default=None, metavar="BYTES/S",
                   help="slower request bodies are cut off, RequestTimeout (default 4K)")
    p.add_argument("--read-buffer", type=_parse_size, default=None, metavar="BYTES",
                   help="object bytes all GETs together fetch ahead in large batches; "
                        "beyond it GETs read a stripe at a time (default 256M)")
    p.add_argument("--write-buffer", type=_parse_size, default=None, metavar="BYTES",
                   help="encoded bytes all PUTs together hold on their way to the pods; "
                        "beyond it a PUT waits for room (default 256M)")


def _pod(argv: list[str]) -> int:
    from kurastore.storage.__main__ import main as pod_main

    return pod_main(argv)


def _admin_credentials(args: argparse.Namespace) -> tuple[str, str]:
    access = os.environ.get("KURASTORE_ACCESS_KEY")
    secret = os.environ.get("KURASTORE_SECRET_KEY")
    if access and secret:
        return access, secret
    from kurastore.state import STATE_FILE

    state_path = Path(args.data) / STATE_FILE
    if state_path.exists():
        raw = json.loads(state_path.read_text())
        return raw["access_key"], raw["secret_key"]
    raise SystemExit(
        "kurastore admin: set KURASTORE_ACCESS_KEY and KURASTORE_SECRET_KEY "
        f"(or pass --data of a kurastore server; {state_path} not found)"
    )


async def _admin_call(args: argparse.Namespace) -> object:
    from kurastore.gateway.admin.client import AdminClient

    access, secret = _admin_credentials(args)
    async with AdminClient(args.endpoint, access, secret) as client:
        what = (args.noun, args.verb)
        if what == ("user", "create"):
            return await client.create_user(args.name, admin=args.admin)
        if what == ("user", "list"):
            return await client.list_users()
        if what == ("user", "delete"):
            return await client.delete_user(args.name)
        if what == ("key", "create"):
            return await client.create_key(args.name)
        if what == ("key", "list"):
            return await client.list_keys(args.name)
        if what == ("key", "delete"):
            return await client.delete_key(args.name)
        if what[0] == "status":
            return await client.status()
        if what[0] == "placement":
            return await client.placement()
        if what[0] == "maintenance":
            return await client.maintenance()
        if what[0] == "rebalance":
            return await client.rebalance()
        if what[0] == "scrub":
            return {"scrub": "requested" if await client.scrub_now() else "not running"}
        if what == ("pods", "list"):
            return await client.list_pods()
        if what == ("pods", "add"):
            if args.url:
                pod = {"id": args.id, "url": args.url, "zone": args.zone, "node": args.node,
                       "weight": args.weight}
                return await client.add_pods(pods=[pod])
            return await client.add_pods(count=args.count)
        if what == ("pods", "drain"):
            return await client.drain_pod(args.id)
        if what == ("pods", "remove"):
            return await client.remove_pod(args.id)
        if what == ("spec", "show"):
            return await client.spec()
        if what == ("spec", "set"):
            changes: dict[str, object] = {}
            if args.pods is not None:
                changes["pods"] = args.pods
            if args.paused is not None:
                changes["paused"] = args.paused
            return await client.set_spec(changes)
    raise SystemExit(f"unknown admin command: {args.noun} {args.verb}")


def _admin(args: argparse.Namespace) -> int:
    from kurastore.gateway.admin.client import AdminAPIError

    try:
        result = asyncio.run(_admin_call(args))
    except AdminAPIError as exc:
        print(f"kurastore admin: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=None if args.noun in ("user", "key") else 2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kurastore", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("KURASTORE_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    srv = sub.add_parser("server", help="run the embedded store: pods, gateway, metadata")
    srv.add_argument("--data", default="./data", help="data directory (default ./data)")
    srv.add_argument("--pods", type=int, default=6, help="storage pods (default 6: erasure 4+2)")
    srv.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 9000),
                     help="HOST:PORT of the S3 endpoint (default 127.0.0.1:9000)")
    srv.add_argument("--region", default="us-east-1")
    srv.add_argument("--domain", default=None,
                     help="domain for virtual-host-style buckets (<bucket>.<domain>)")
    srv.add_argument("--heal-rate", type=_parse_rate, default=None, metavar="BYTES/S",
                     help="pod bytes per second the healer may move, e.g. 64M (0: unlimited)")
    srv.add_argument("--scrub-rate", type=_parse_rate, default=None, metavar="BYTES/S",
                     help="shard bytes per second the scrubber verifies, e.g. 4M (0: unlimited)")
    srv.add_argument("--scrub-interval", type=float, default=None, metavar="SECONDS",
                     help="seconds from the start of one scrub pass to the next (default 1 day)")
    srv.add_argument("--rebalance-rate", type=_parse_rate, default=None, metavar="BYTES/S",
                     help="pod bytes per second the rebalancer may move, e.g. 32M (0: unlimited)")
    srv.add_argument("--rebalance-grace", type=float, default=None, metavar="SECONDS",
                     help="how long moved shards' old copies are kept (default 300)")
    srv.add_argument("--rebalance-concurrency", type=int, default=None, metavar="N",
                     help="partitions the rebalancer moves at once (default 2)")
    srv.add_argument("--orphan-grace", type=float, default=None, metavar="SECONDS",
                     help="unreferenced shards younger than this are left (default 3600)")
    srv.add_argument("--lifecycle-day", type=float, default=None, metavar="SECONDS",
                     help="length of a day for S3 lifecycle rules (default 86400; shorter "
                          "only to try rules out)")
    srv.add_argument("--access-log-roll", type=float, default=None, metavar="SECONDS",
                     help="S3 server access logs: deliver each bucket's records as a log "
                          "object this often (default 300)")
    _add_load_args(srv)
    _add_metadata_args(srv)

    gw = sub.add_parser("gateway", help="run one gateway on shared PostgreSQL metadata")
    _add_metadata_args(gw)
    gw.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 9000),
                    help="HOST:PORT of the S3 endpoint (default 127.0.0.1:9000)")
    gw.add_argument("--cluster-secret-file", default=None, metavar="PATH",
                    help="the pods' cluster secret (also KURASTORE_CLUSTER_SECRET)")
    gw.add_argument("--metadata-key-file", default=None, metavar="PATH",
                    help="32-byte key sealing access-key secrets, 64 hex characters "
                         "(also KURASTORE_METADATA_KEY)")
    gw.add_argument("--region", default="us-east-1")
    gw.add_argument("--domain", default=None,
                    help="domain for virtual-host-style buckets (<bucket>.<domain>)")
    gw.add_argument("--erasure", type=_parse_erasure, default=None, metavar="K+M",
                    help="erasure code for new writes (default: from the placement map)")
    gw.add_argument("--sqlite", default=None, metavar="PATH",
                    help="embedded SQLite metadata in this file (one gateway only)")
    gw.add_argument("--rebalance-rate", type=_parse_rate, default=None, metavar="BYTES/S",
                    help="pod bytes per second the rebalancer may move (0: unlimited)")
    gw.add_argument("--rebalance-grace", type=float, default=None, metavar="SECONDS",
                    help="how long moved shards' old copies are kept (default 300)")
    gw.add_argument("--rebalance-concurrency", type=int, default=None, metavar="N",
                    help="partitions the rebalancer moves at once (default 2)")
    _add_load_args(gw)

    op = sub.add_parser("operator", help="reconcile ObjectStore resources on Kubernetes "
                        "(in-cluster config or KUBECONFIG)")
    op.add_argument("--namespace", default=os.environ.get("KURASTORE_WATCH_NAMESPACE") or None,
                    help="watch one namespace (default: all)")
    op.add_argument("--pod-address", choices=["dns", "ip"], default=None,
                    help="register pods by DNS name or pod IP (default: the spec's podAddress)")
    op.add_argument("--resync", type=float, default=30.0, metavar="SECONDS",
                    help="reconcile every store at least this often (default 30)")
    op.add_argument("--no-leader-election", action="store_true",
                    help="skip the coordination.k8s.io Lease (one replica only)")
    op.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                    help="namespace of the leader Lease (default $POD_NAMESPACE or default)")

    sub.add_parser("pod", help="run one storage pod (see kurastore pod --help)", add_help=False)

    adm = sub.add_parser("admin", help="manage users, keys and the cluster")
    adm.add_argument("--endpoint", default=os.environ.get("KURASTORE_ENDPOINT",
                                                          "http://127.0.0.1:9000"))
    adm.add_argument("--data", default="./data",
                     help="read root keys from this server data directory when not in env")
    nouns = adm.add_subparsers(dest="noun", required=True)
    user = nouns.add_parser("user").add_subparsers(dest="verb", required=True)
    uc = user.add_parser("create")
    uc.add_argument("name")
    uc.add_argument("--admin", action="store_true")
    user.add_parser("list")
    user.add_parser("delete").add_argument("name")
    key = nouns.add_parser("key").add_subparsers(dest="verb", required=True)
    key.add_parser("create").add_argument("name", help="user name")
    key.add_parser("list").add_argument("name", help="user name")
    key.add_parser("delete").add_argument("name", help="access key")
    nouns.add_parser("status").set_defaults(verb="")
    nouns.add_parser("placement").set_defaults(verb="")
    nouns.add_parser("maintenance", help="healer and scrubber progress, durability"
                     ).set_defaults(verb="")
    nouns.add_parser("rebalance", help="rebalance progress: partitions and bytes left, rate, ETA"
                     ).set_defaults(verb="")
    nouns.add_parser("scrub", help="start a scrub pass now (every shard re-read and checked)"
                     ).set_defaults(verb="")
    pods = nouns.add_parser("pods", help="the pod set: list, add, drain, remove"
                            ).add_subparsers(dest="verb", required=True)
    pods.add_parser("list")
    pa = pods.add_parser("add", help="start --count pods (kurastore server) or register one "
                         "pod by --id and --url")
    pa.add_argument("--count", type=int, default=1)
    pa.add_argument("--id", default=None)
    pa.add_argument("--url", default=None)
    pa.add_argument("--zone", default="")
    pa.add_argument("--node", default="")
    pa.add_argument("--weight", type=float, default=1.0)
    pods.add_parser("drain", help="move every shard off a pod").add_argument("id")
    pods.add_parser("remove", help="remove a drained pod").add_argument("id")
    spec = nouns.add_parser("spec", help="kurastore server: the desired local spec and its "
                            "ObjectStore status (phase, conditions, health, rebalance)"
                            ).add_subparsers(dest="verb")
    spec.add_parser("show")
    ss = spec.add_parser("set", help="change the desired spec; the local operator carries "
                         "it out (scale in drains first, never below k+m)")
    ss.add_argument("--pods", type=int, default=None, help="pod count wanted")
    pause = ss.add_mutually_exclusive_group()
    pause.add_argument("--pause", dest="paused", action="store_const", const=True,
                       default=None, help="stop reconciling")
    pause.add_argument("--resume", dest="paused", action="store_const", const=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tune_malloc()
    raise_open_files_limit()
    if argv[:1] == ["pod"]:
        setup_logging(os.environ.get("KURASTORE_LOG_LEVEL", "INFO"))
        return _pod(argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "noun", None) == "spec" and not args.verb:
        args.verb = "show"
    setup_logging(args.log_level)
    if args.command == "server":
        return _server(args)
    if args.command == "admin":
        return _admin(args)
    if args.command == "gateway":
        return _gateway(args)
    if args.command == "operator":
        return _operator(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
