"""The ``pulmogate`` command: run services, migrate, send a series, run the demo."""

import asyncio
from pathlib import Path

import typer

from pulmogate.common.settings import Settings

app = typer.Typer(help="PulmoGate: chest CT lung lesion analysis gateway.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
user_app = typer.Typer(help="Users who sign in to the API and the web UI.", no_args_is_help=True)
app.add_typer(user_app, name="user")

ALL_SERVICES = ["receiver", "router", "inference", "sender", "api"]


def _run(names: list[str], *, migrate: bool = False) -> None:
    from pulmogate.common.runtime import run_services

    asyncio.run(run_services(names, Settings(), migrate=migrate))


@app.command()
def up(
    services: str = typer.Option(",".join(ALL_SERVICES), help="Comma-separated services to run"),
) -> None:
    """Run all services in one process (embedded SQLite + in-process bus by default)."""
    _run([s.strip() for s in services.split(",") if s.strip()], migrate=True)


def _service_command(name: str) -> None:
    def command() -> None:
        _run([name])

    command.__doc__ = f"Run the {name} service alone."
    app.command(name=name)(command)


for _name in ALL_SERVICES:
    _service_command(_name)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    from pulmogate.common.db.migrate import upgrade

    upgrade(Settings().effective_database_url)
    typer.echo("database schema is up to date")


@user_app.command("create")
def user_create(
    username: str = typer.Argument(..., help="Sign-in name"),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role"),
    role: str = typer.Option("", help="admin, operator or viewer (default viewer; --admin: admin)"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from stdin instead of a prompt"
    ),
) -> None:
    """Create a user in the configured database (prompts for the password twice)."""
    import re
    import sys

    from pulmogate.common.credentials import WeakPassword
    from pulmogate.common.db.accounts import Role
    from pulmogate.common.users import USERNAME_PATTERN, UserExists, create_user_in

    if not re.match(USERNAME_PATTERN, username):
        typer.echo("username: letters, digits and . _ @ - only (up to 64)", err=True)
        raise typer.Exit(2)
    try:
        chosen = Role(role) if role else (Role.ADMIN if admin else Role.VIEWER)
    except ValueError:
        typer.echo(f"unknown role {role!r}: admin, operator or viewer", err=True)
        raise typer.Exit(2) from None
    if admin and chosen != Role.ADMIN:
        typer.echo("--admin contradicts --role", err=True)
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        asyncio.run(create_user_in(Settings(), username, password, chosen))
    except (UserExists, WeakPassword) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"user {username} created with the {chosen} role")


@app.command()
def send(
    directory: Path = typer.Argument(..., exists=True, help="Folder of DICOM files (recursive)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(11112),
    aet: str = typer.Option("PULMOGATE", help="Called AE title"),
    calling_aet: str = typer.Option("PULMOGATE_SCU", help="Our AE title"),
) -> None:
    """Send every DICOM file under DIRECTORY with C-STORE, with a progress bar."""
    from tqdm import tqdm

    from pulmogate.common.dicom.scu import AssociationFailed, store

    files = sorted(p for p in directory.rglob("*") if p.is_file())
    with tqdm(total=len(files), unit="file", desc="C-STORE") as bar:
        try:
            result = store(files, host, port, aet, calling_aet=calling_aet, on_progress=bar.update)
        except AssociationFailed as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
    typer.echo(f"sent {result.sent} of {len(files)}")
    for uid, reason in result.failed:
        typer.echo(f"failed {uid}: {reason}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    api_url: str = typer.Option("http://127.0.0.1:8080", help="The running gateway's API"),
    dicom_host: str = typer.Option("127.0.0.1"),
    dicom_port: int = typer.Option(11112),
    aet: str = typer.Option("PULMOGATE"),
    slices: int = typer.Option(120),
    involvement: float = typer.Option(0.3, help="Lesion fraction of lung volume, 0..0.9"),
    timeout: float = typer.Option(300.0),
    token: str = typer.Option(
        "",
        envvar="PULMOGATE_API_TOKEN",
        help="Bearer token (default: the env admin's sign-in, else a local one-hour token)",
    ),
) -> None:
    """Send a synthetic chest CT to the running gateway and print what comes back."""
    from pulmogate.common.demo import run_demo

    raise typer.Exit(
        run_demo(
            api_url=api_url,
            token=token or None,
            dicom_host=dicom_host,
            dicom_port=dicom_port,
            aet=aet,
            slices=slices,
            involvement=involvement,
            timeout=timeout,
        )
    )


def main() -> None:
    """Console-script entry point."""
    app()
