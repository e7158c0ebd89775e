"""The ``pulmogate`` command: run services, migrate, probe liveness; hand other commands on.

What a service container runs lives here, on the standard library only, so an image holds
pulmogate-common, its service and nothing of the operator tools. Other commands come from
installed distributions (entry point group ``pulmogate.commands``: pulmogate-tools adds
``user``, ``license``, ``send`` and ``demo``), each called with the arguments from its name on.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

from pulmogate.common.settings import Settings

ALL_SERVICES = ["receiver", "router", "inference", "sender", "api"]
COMMAND_GROUP = "pulmogate.commands"
TOOLS_DISTRIBUTION = "pulmogate-tools"
TOOLS_COMMANDS = ("user", "license", "send", "demo")


def installed_commands() -> dict[str, EntryPoint]:
    """Commands other distributions add, by name."""
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


def build_parser(plugins: dict[str, EntryPoint]) -> argparse.ArgumentParser:
    """The launcher's own commands, and the installed ones listed for ``--help``."""
    parser = argparse.ArgumentParser(
        prog="pulmogate", description="PulmoGate: chest CT lung lesion analysis gateway."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    up = commands.add_parser(
        "up", help="Run all services in one process (embedded SQLite + in-process bus by default)."
    )
    up.add_argument(
        "--services", default=",".join(ALL_SERVICES), help="Comma-separated services to run"
    )
    for name in ALL_SERVICES:
        commands.add_parser(name, help=f"Run the {name} service alone.")
    health = commands.add_parser(
        "health",
        help="Liveness probe for a container: exit 0 if this host's service loop beat recently.",
    )
    health.add_argument(
        "--max-age",
        type=float,
        default=60.0,
        help="Seconds since the last beat that still count as up (default 60)",
    )
    db = commands.add_parser("db", help="Database schema.")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    db_commands.add_parser("upgrade", help="Apply all database migrations.")
    for name, ep in sorted(plugins.items()):
        source = ep.dist.name if ep.dist else ep.value
        commands.add_parser(name, help=f"(from {source}; `pulmogate {name} --help`)")
    return parser


def _run(names: list[str], *, migrate: bool = False) -> None:
    from pulmogate.common.runtime import run_services

    asyncio.run(run_services(names, Settings(), migrate=migrate))


def _health(max_age: float) -> int:
    from pulmogate.common.heartbeat import alive_age_s

    path = Settings().liveness_file
    age = alive_age_s(path)
    if age is None:
        print(f"not alive: {path} does not exist (service not started?)", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"not alive: last beat {age:.0f} s ago (limit {max_age:.0f} s)", file=sys.stderr)
        return 1
    print(f"alive: last beat {age:.0f} s ago")
    return 0


def _db_upgrade() -> int:
    from pulmogate.common.db.migrate import upgrade

    upgrade(Settings().effective_database_url)
    print("database schema is up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``argv`` without the program name; default sys.argv)."""
    args = list(sys.argv[1:] if argv is None else argv)
    plugins = installed_commands()
    if args and args[0] in plugins:
        command: Callable[[list[str]], None] = plugins[args[0]].load()
        command(args)
        return
    if args and args[0] in TOOLS_COMMANDS:
        print(
            f"pulmogate {args[0]}: this command comes with {TOOLS_DISTRIBUTION}, which is not "
            "installed here (service images carry only their service); run it where "
            f"{TOOLS_DISTRIBUTION} is installed: the api image, or the development .venv",
            file=sys.stderr,
        )
        raise SystemExit(2)
    options = build_parser(plugins).parse_args(args)
    if options.command == "up":
        _run([s.strip() for s in options.services.split(",") if s.strip()], migrate=True)
    elif options.command in ALL_SERVICES:
        _run([options.command])
    elif options.command == "health":
        raise SystemExit(_health(options.max_age))
    elif options.command == "db":
        raise SystemExit(_db_upgrade())
