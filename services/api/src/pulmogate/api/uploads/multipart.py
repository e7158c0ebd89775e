"""Read a multipart upload as it streams: file parts go straight into the upload's staging
folder on the storage volume (never the system temp folder), small fields into memory.

The route calls this only after the caller is authenticated and allowed to upload, so an
anonymous or unauthorised body is never read. The disk watermark is checked again every
``SPACE_CHECK_BYTES`` written, so a large upload stops with 507 instead of filling the volume.
"""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from pulmogate.api.errors import ApiError
from pulmogate.common.disk import DISK_FULL_ERRNOS

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 100
WRITE_BYTES = 1024 * 1024
SPACE_CHECK_BYTES = 8 * 1024**2


class BadForm(ApiError):
    """The body is not the multipart form the route expects (400)."""

    status_code = 400


class TooManyFiles(ApiError):
    """More file parts than an upload may have (413)."""

    status_code = 413


@dataclass
class ReceivedFile:
    """One file part as written to disk, with the name the client gave it."""

    filename: str
    path: Path
    size: int = 0


@dataclass
class ReceivedForm:
    """The form's text fields (last value wins) and its files in order."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    file: ReceivedFile | None = None
    out: IO[bytes] | None = None
    text: bytearray = field(default_factory=bytearray)


class _FormReader:
    """python-multipart callbacks collecting parts; writes happen between feeds, in a thread."""

    def __init__(self, folder: Path, max_files: int) -> None:
        self.folder = folder
        self.max_files = max_files
        self.form = ReceivedForm()
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""
        self.pending: list[tuple[IO[bytes], bytes]] = []
        self.buffer = bytearray()
        self.open_files: list[IO[bytes]] = []
        self.ended = False

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[self.header_name.lower()] = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise BadForm("a form part has no name in its Content-Disposition")
        self.part.name = name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            if len(self.form.fields) >= MAX_FIELDS:
                raise BadForm(f"the form has more than {MAX_FIELDS} fields")
            return
        if len(self.form.files) >= self.max_files:
            raise TooManyFiles(f"an upload may have at most {self.max_files} files")
        path = self.folder / f"part-{len(self.form.files):06d}"
        received = ReceivedFile(filename.decode("utf-8", "replace") or "upload", path)
        self.part.file = received
        self.part.out = path.open("wb")
        self.open_files.append(self.part.out)
        self.form.files.append(received)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part.file is None:
            if len(self.part.text) + len(chunk) > MAX_FIELD_BYTES:
                raise BadForm(f"form field {self.part.name!r} is over {MAX_FIELD_BYTES} bytes")
            self.part.text.extend(chunk)
            return
        assert self.part.out is not None
        self.part.file.size += len(chunk)
        self.pending.append((self.part.out, chunk))

    def on_part_end(self) -> None:
        if self.part.file is None:
            self.form.fields[self.part.name] = self.part.text.decode("utf-8", "replace")

    def on_end(self) -> None:
        self.ended = True

    def take_writes(self) -> list[tuple[IO[bytes], bytes]]:
        """The bytes to write since the last call, joined per file."""
        runs: list[tuple[IO[bytes], list[bytes]]] = []
        for out, chunk in self.pending:
            if runs and runs[-1][0] is out:
                runs[-1][1].append(chunk)
            else:
                runs.append((out, [chunk]))
        self.pending.clear()
        return [(out, b"".join(chunks)) for out, chunks in runs]

    def pending_bytes(self) -> int:
        """How many bytes wait to be written."""
        return sum(len(chunk) for _, chunk in self.pending)

    def close(self) -> None:
        """Close every file part."""
        for out in self.open_files:
            with contextlib.suppress(OSError):
                out.close()


def _write(writes: list[tuple[IO[bytes], bytes]]) -> int:
    for out, data in writes:
        out.write(data)
        out.flush()
    return sum(len(data) for _, data in writes)


async def read_form(
    request: Request,
    folder: Path,
    *,
    max_files: int,
    space_refusal: Callable[[], str | None],
    on_full: Callable[[str], Exception],
) -> ReceivedForm:
    """Stream the request's multipart body into ``folder``; the fields and the written files.

    ``space_refusal`` is called every ``SPACE_CHECK_BYTES``: a reason stops the upload with
    ``on_full(reason)``. The caller removes ``folder`` when it is done, whatever happened.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise BadForm("send the files as multipart/form-data (field 'files', repeated)")
    reader = _FormReader(folder, max_files)
    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_part_begin": reader.on_part_begin,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_end": reader.on_end,
        },
    )

    async def flush() -> int:
        try:
            return await asyncio.to_thread(_write, reader.take_writes())
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise on_full("storage full (no space left on the device)") from exc
            raise

    written_since_check = 0
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise BadForm(f"the multipart body is malformed: {exc}") from exc
            if reader.pending_bytes() >= WRITE_BYTES:
                written_since_check += await flush()
            if written_since_check >= SPACE_CHECK_BYTES:
                written_since_check = 0
                full = await asyncio.to_thread(space_refusal)
                if full:
                    raise on_full(full)
        try:
            parser.finalize()
        except FormParserError as exc:
            raise BadForm(f"the multipart body is malformed: {exc}") from exc
        if not reader.ended:
            raise BadForm("the multipart body ended before its closing boundary")
        await flush()
    finally:
        reader.close()
    return reader.form
