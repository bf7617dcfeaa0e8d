"""The `kurastore` command: server, pod, admin."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from kurastore.logs import setup_logging
from kurastore.process import tune_malloc


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host or "127.0.0.1", int(port)


def _server(args: argparse.Namespace) -> int:
    from kurastore.server import ServerOptions, run_server

    host, port = args.listen
    opts = ServerOptions(
        data_dir=Path(args.data), pods=args.pods, host=host, port=port,
        region=args.region, domain=args.domain,
    )
    try:
        asyncio.run(run_server(opts))
    except KeyboardInterrupt:
        pass
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tune_malloc()
    if argv[:1] == ["pod"]:
        setup_logging(os.environ.get("KURASTORE_LOG_LEVEL", "INFO"))
        return _pod(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "server":
        return _server(args)
    if args.command == "admin":
        return _admin(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
