"""Operator commands of ``pulmogate``: users, licenses, sending a series, the demo.

The ``pulmogate`` launcher (``pulmogate.common.cli``) runs services itself and hands these
commands here (entry point group ``pulmogate.commands``), so service images need no typer.
"""

import asyncio
from pathlib import Path

import typer

from pulmogate.common.settings import Settings

app = typer.Typer(help="PulmoGate operator commands.", no_args_is_help=True)
user_app = typer.Typer(help="Users who sign in to the API and the web UI.", no_args_is_help=True)
app.add_typer(user_app, name="user")
license_app = typer.Typer(
    help="License keys: keygen and issue (vendor), add and show (gateway).", no_args_is_help=True
)
app.add_typer(license_app, name="license")


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


@license_app.command("keygen")
def license_keygen(
    private_key: Path = typer.Option(..., help="Where to write the new Ed25519 signing key (PEM)"),
) -> None:
    """Vendor: make a signing key pair; prints the public key for PULMOGATE_LICENSE_PUBLIC_KEY."""
    import os

    from pulmogate.common.licensing import generate_private_key, private_key_pem, public_key_text

    if private_key.exists():
        typer.echo(f"{private_key} exists; not overwriting a signing key", err=True)
        raise typer.Exit(1)
    key = generate_private_key()
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_pem(key))
    typer.echo(f"PULMOGATE_LICENSE_PUBLIC_KEY={public_key_text(key)}")


@license_app.command("issue")
def license_issue(
    private_key: Path = typer.Option(..., exists=True, help="The vendor's signing key (PEM)"),
    licensee: str = typer.Option(..., help="Who the license is for"),
    expires: str = typer.Option(..., help="Last valid day, YYYY-MM-DD"),
    issued: str = typer.Option("", help="First valid day, YYYY-MM-DD (default today, UTC)"),
    studies_per_day: int | None = typer.Option(None, min=1, help="Daily analysis limit"),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write here, not stdout"),
) -> None:
    """Vendor: sign a license key."""
    from datetime import UTC, date, datetime

    from pulmogate.common.licensing import (
        PRODUCT,
        LicenseError,
        LicenseFields,
        issue_license,
        load_private_key,
    )

    try:
        fields = LicenseFields(
            product=PRODUCT,
            licensee=licensee,
            issued=date.fromisoformat(issued) if issued else datetime.now(UTC).date(),
            expires=date.fromisoformat(expires),
            studies_per_day=studies_per_day,
        )
        text = issue_license(load_private_key(private_key.read_bytes()), fields)
    except (ValueError, LicenseError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"license for {licensee} until {fields.expires} written to {output}")


@license_app.command("add")
def license_add(
    key_file: Path = typer.Argument(..., exists=True, help="The license key file"),
) -> None:
    """Install a license key in the configured database (its signature must verify)."""
    from pulmogate.common.licensing import LicenseError

    try:
        typer.echo(asyncio.run(_license_add(Settings(), key_file.read_text())))
    except LicenseError as exc:
        typer.echo(f"license refused: {exc}", err=True)
        raise typer.Exit(1) from exc


async def _license_add(settings: Settings, key_text: str) -> str:
    from datetime import UTC, datetime

    from pulmogate.common.db.migrate import upgrade_async
    from pulmogate.common.db.session import Database
    from pulmogate.common.licensing import current_status, install_license

    if not settings.database_url:
        await upgrade_async(settings.effective_database_url)  # embedded, as `pulmogate up` does
    db = Database(settings.effective_database_url)
    try:
        async with db.session() as session:
            await install_license(
                session, key_text, settings.license_public_key, actor_id=None, actor_name="cli"
            )
        async with db.sessions() as session:
            status = await current_status(
                session,
                settings.license_public_key,
                datetime.now(UTC).date(),
                settings.license_warning_days,
            )
    finally:
        await db.dispose()
    return f"license installed: {status.state}: {status.message}"


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
    from pulmogate.tools.demo import run_demo

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


def run(argv: list[str]) -> None:
    """Run one operator command: ``argv`` starts with its name (``["user", "create", ...]``)."""
    app(args=argv, prog_name="pulmogate")
