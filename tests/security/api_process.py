"""`pulmogate api` as a real OS process (uvicorn, real database) for attacks over real sockets."""

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fixtures.gateway import ADMIN_PASSWORD, ADMIN_USERNAME, PULMOGATE
from tests.fixtures.infra import free_port


@dataclass
class ApiProcess:
    """A running api process: its port, folders and log."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    temp_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def sign_in(
        self, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD
    ) -> httpx.Client:
        """A client holding a session cookie and sending its CSRF header."""
        response = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": username, "password": password},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return httpx.Client(
            base_url=self.url,
            timeout=30,
            cookies=response.cookies,
            headers={"X-CSRF-Token": response.json()["csrf_token"]},
        )

    def token(self, client: httpx.Client, name: str = "tests") -> str:
        """A new bearer token of the signed-in user."""
        created = client.post("/api/v1/tokens", json={"name": name})
        assert created.status_code == 201, created.text
        token: str = created.json()["token"]
        return token


@contextmanager
def run_api(
    data_dir: Path, *, database_url: str = "", extra_env: dict[str, str] | None = None
) -> Iterator[ApiProcess]:
    """Start ``pulmogate api`` on a free port; the first admin comes from the environment.

    ``TMPDIR`` points at an empty folder of its own, so a test sees whatever the process
    spools to the system temp folder.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    temp_dir = data_dir.parent / f"{data_dir.name}-tmp"
    temp_dir.mkdir(exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}-api.log"
    port = free_port()
    env = {
        **os.environ,
        "TMPDIR": str(temp_dir),
        "PULMOGATE_DATA_DIR": str(data_dir),
        "PULMOGATE_DATABASE_URL": database_url,
        "PULMOGATE_BROKER_URL": "memory://",
        "PULMOGATE_API_PORT": str(port),
        "PULMOGATE_ADMIN_USERNAME": ADMIN_USERNAME,
        "PULMOGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PULMOGATE_LIVENESS_FILE": str(data_dir.parent / f"{data_dir.name}.alive"),
        **(extra_env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen([PULMOGATE, "api"], env=env, stdout=out, stderr=subprocess.STDOUT)
    api = ApiProcess(proc, port, data_dir, temp_dir, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"api exited with {proc.returncode}\n{api.logs()[-3000:]}")
            try:
                if httpx.get(f"{api.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"api not ready in 60 s\n{api.logs()[-3000:]}")
            time.sleep(0.2)
        yield api
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@dataclass
class StreamedAnswer:
    """What came back while a client streamed a large body."""

    status: int
    seconds: float
    sent_bytes: int
    head: bytes

    @property
    def body(self) -> bytes:
        return self.head.partition(b"\r\n\r\n")[2]


def stream_post(
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    declared: int | None,
    send_at_most: int,
    prefix: bytes = b"",
    timeout_s: float = 30.0,
    read_after_s: float = 0.0,
    receive_buffer: int | None = None,
) -> StreamedAnswer:
    """POST a body of ``declared`` bytes (None: chunked encoding) 1 MiB at a time from a
    thread while the answer is read as soon as it comes; the sender stops at ``send_at_most``
    bytes, when the server stops reading for 2 s, or when the connection closes. The body
    starts with ``prefix`` (e.g. a multipart part header), then NUL bytes. ``read_after_s``:
    the answer is first read that long after the body started (a client busy sending);
    ``receive_buffer``: the socket's SO_RCVBUF (small: the answer waits in the server's
    send queue until it is read)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(
        f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    )
    chunk = b"\0" * 1024**2
    frame = chunk if declared is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(2)
    sock.connect(("127.0.0.1", port))
    sent = 0
    answered = threading.Event()

    body_room = declared - len(prefix) if declared is not None else send_at_most

    def pump() -> None:
        nonlocal sent
        try:
            while sent < min(send_at_most, body_room) and not answered.is_set():
                size = min(len(chunk), body_room - sent)
                sock.sendall(frame if size == len(chunk) else chunk[:size])
                sent += size
        except OSError:
            pass

    start = time.monotonic()
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    if prefix:
        sock.sendall(prefix if declared is not None else b"%x\r\n%s\r\n" % (len(prefix), prefix))
    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    time.sleep(read_after_s)
    received = b""
    try:
        while b"\r\n\r\n" not in received and time.monotonic() - start < timeout_s:
            try:
                more = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not more:
                break
            received += more
        seconds = time.monotonic() - start
        answered.set()
        received += _rest_of_body(sock, received)
        sender.join(timeout=5)
    finally:
        sock.close()
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0
    return StreamedAnswer(status, seconds, sent, received[:4000])


def _rest_of_body(sock: socket.socket, received: bytes) -> bytes:
    """The rest of a Content-Length body after the headers (what arrives within 2 s)."""
    head, _, body = received.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    more = b""
    deadline = time.monotonic() + 2
    while len(body) + len(more) < length and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (TimeoutError, OSError):
            break
        if not data:
            break
        more += data
    return more


@contextmanager
def small_volume(folder: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` mounted at ``folder`` (skips the test where mounting is not
    allowed: a real full disk cannot be made without it)."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def used_percent(folder: Path) -> float:
    """How full the volume holding ``folder`` is."""
    st = os.statvfs(folder)
    return 100.0 * (st.f_blocks - st.f_bavail) / st.f_blocks


def fill_to(folder: Path, percent: float) -> None:
    """Grow or shrink ``folder``/ballast until the volume is ``percent`` full (100: until the
    kernel says no space is left)."""
    ballast = folder / "ballast.bin"
    st = os.statvfs(folder)
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bavail) * st.f_frsize
    have = ballast.stat().st_size if ballast.exists() else 0
    want = max(0, have + int(total * percent / 100.0) - used)
    if percent >= 100:
        with ballast.open("ab", buffering=0) as out:
            for size in (1024**2, 4096, 1):
                try:
                    while True:
                        out.write(b"\0" * size)
                except OSError:
                    pass
        return
    with ballast.open("ab") as out:
        out.truncate(want)
    if want > have:
        fd = os.open(ballast, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, want)
        finally:
            os.close(fd)
