"""POST /api/v1/uploads (multipart) and resumable /api/v1/uploads/sessions: a zip or DICOM
files become series routed like received ones."""

import asyncio
import contextlib
from functools import partial
from pathlib import Path
from typing import IO, Annotated

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field

from pulmogate.api.auditing import audit_change
from pulmogate.api.auth import CSRF_FIELD, CurrentUser
from pulmogate.api.crud import rules as rules_crud
from pulmogate.api.deps import ContextDep, OperatorDep
from pulmogate.api.errors import InvalidField
from pulmogate.api.operations_schemas import UploadResult
from pulmogate.api.routes.responses import Responses, conflict, not_found
from pulmogate.api.schemas import ErrorMessage
from pulmogate.api.uploads import chunked, ingest, multipart
from pulmogate.api.uploads.unpack import MAX_FILES, UnsafeUpload
from pulmogate.common.db.accounts import Role
from pulmogate.common.disk import disk_usage, watermark_refusal
from pulmogate.common.runtime import Context

router = APIRouter(prefix="/uploads", tags=["uploads"])

WRITE_BYTES = 1024**2
STORAGE_FULL: Responses = {
    507: {"model": ErrorMessage, "description": "Storage above its watermark"}
}
REFUSED: Responses = {
    422: {"model": ErrorMessage, "description": "A file is unsafe or not a CT instance"}
}


def _space_refusal(ctx: Context) -> str | None:
    return watermark_refusal(ctx.storage.root, ctx.settings.disk_max_used_percent)


async def _check_space(ctx: Context, what: str = "upload") -> None:
    full = await asyncio.to_thread(_space_refusal, ctx)
    if full:
        raise ingest.StorageFull(f"{what} refused: {full}")


async def store_upload(
    ctx: Context,
    user: CurrentUser,
    sources: list[tuple[str, IO[bytes]]],
    *,
    rule_id: int | None,
    peer_ip: str,
    staging: Path,
) -> UploadResult:
    """Check every file, file them as received instances and announce their series.

    Files are unpacked into ``staging`` (the caller removes it afterwards).
    """
    unpacked = staging / "unpacked"
    unpacked.mkdir()
    skip_others = ctx.settings.non_ct_objects == "discard"
    try:
        checked = await asyncio.to_thread(
            partial(ingest.stage_and_check, skip_others=skip_others), sources, unpacked
        )
    except UnsafeUpload as exc:
        raise ingest.UploadRefused(f"{exc.name}: {exc.reason}") from exc
    items = checked.files
    await ingest.check_series_are_new(ctx.db, {i.values.series_uid for i in items})
    await ingest.check_instances_are_new(ctx.db, items)
    filed = await asyncio.to_thread(ingest.file_into_storage, items, ctx.storage)
    try:
        return await ingest.record_upload(
            ctx.db,
            filed,
            rule_id=rule_id,
            user=user.name,
            peer_ip=peer_ip,
            called_ae=ctx.settings.ae_title,
            skipped=checked.skipped,
            audit=lambda s, result: audit_change(
                s,
                user,
                "upload.create",
                f"series {', '.join(str(x.series_id) for x in result.series)}",
                {"files": result.files, "skipped": len(result.skipped), "rule_id": rule_id},
            ),
        )
    except BaseException:
        ingest.unfile(filed)
        raise


def _peer(request: Request) -> str:
    return request.client.host if request.client else ""


def _rule_id(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit():
        raise InvalidField("rule_id", f"rule_id must be a rule's id (a number), not {value[:20]!r}")
    return int(value)


async def _known_rule(ctx: Context, rule_id: int | None) -> None:
    if rule_id is not None:
        async with ctx.db.sessions() as session:
            await rules_crud.get_rule(session, rule_id)


MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "DICOM files and/or zips of them",
                        },
                        "rule_id": {
                            "type": "integer",
                            "description": "Route with this rule; empty = match rules as usual",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=UploadResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        **conflict("A series or an instance of the upload is already held"),
        **STORAGE_FULL,
        **REFUSED,
        413: {"model": ErrorMessage, "description": "Larger than PULMOGATE_UPLOAD_MAX_BYTES"},
    },
    openapi_extra=MULTIPART_BODY,
)
async def upload(request: Request, ctx: ContextDep, user: OperatorDep) -> UploadResult:
    """Check every file (zip-slip, zip bombs, symlinks, non-DICOM are refused), store, route.

    The body is read only now, after the caller's role was checked, straight into a staging
    folder on the storage volume, with the watermark checked as it grows.
    """
    await _check_space(ctx)
    staging = await asyncio.to_thread(ingest.staging_dir, ctx.storage)
    try:
        received = staging / "received"
        received.mkdir()
        form = await multipart.read_form(
            request,
            received,
            max_files=MAX_FILES,
            space_refusal=lambda: _space_refusal(ctx),
            on_full=lambda reason: ingest.StorageFull(f"upload refused: {reason}"),
        )
        user.check_form_csrf(form.fields.get(CSRF_FIELD))
        rule_id = _rule_id(form.fields.get("rule_id", ""))
        if not form.files:
            raise InvalidField("files", "no files in the upload: send them as 'files'")
        await _known_rule(ctx, rule_id)
        with contextlib.ExitStack() as stack:
            sources: list[tuple[str, IO[bytes]]] = [
                (f.filename, stack.enter_context(f.path.open("rb"))) for f in form.files
            ]
            return await store_upload(
                ctx, user, sources, rule_id=rule_id, peer_ip=_peer(request), staging=staging
            )
    finally:
        await asyncio.to_thread(ingest.discard, staging)


# --- resumable ------------------------------------------------------------------------------


class SessionCreate(BaseModel):
    """One file to upload in chunks."""

    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=1, description="The file's size in bytes")


class SessionState(BaseModel):
    """Where an upload session stands: send the next chunk at ``offset``."""

    id: str
    filename: str
    size: int
    offset: int


class SessionsFinish(BaseModel):
    """Sessions whose files form one upload (all or nothing)."""

    session_ids: list[str] = Field(min_length=1, max_length=1000)
    rule_id: int | None = None


def _state(ctx: Context, meta: chunked.SessionMeta) -> SessionState:
    return SessionState(
        id=meta.id,
        filename=meta.filename,
        size=meta.size,
        offset=chunked.received(ctx.storage, meta.id),
    )


@router.post(
    "/sessions",
    response_model=SessionState,
    status_code=status.HTTP_201_CREATED,
    responses={
        **STORAGE_FULL,
        413: {"model": ErrorMessage, "description": "Declared size over the limit"},
    },
)
async def open_session(body: SessionCreate, ctx: ContextDep, user: OperatorDep) -> SessionState:
    """Start a resumable upload of one file (refused at once when it cannot fit)."""
    chunked.check_declared_size(body.filename, body.size, ctx.settings.upload_max_bytes)
    await _check_space(ctx)
    await asyncio.to_thread(_check_room, ctx, body.filename, body.size)
    meta = await asyncio.to_thread(
        chunked.open_session,
        ctx.storage,
        body.filename,
        body.size,
        user.name,
        max_bytes=ctx.settings.upload_max_bytes,
    )
    return _state(ctx, meta)


def _check_room(ctx: Context, filename: str, size: int) -> None:
    """507 when ``size`` more bytes would take the volume over the watermark."""
    usage = disk_usage(ctx.storage.root)
    limit = ctx.settings.disk_max_used_percent
    room = usage.free_bytes - usage.total_bytes * (100.0 - limit) / 100.0
    if size > room:
        raise ingest.StorageFull(
            f"{filename}: {size / 1024**2:.1f} MiB would take the storage volume over its "
            f"{limit:g} % limit ({max(room, 0) / 1024**2:.1f} MiB left below it)"
        )


@router.get(
    "/sessions/{session_id}", response_model=SessionState, responses=not_found("upload session")
)
async def session_state(session_id: str, ctx: ContextDep, user: OperatorDep) -> SessionState:
    """How many bytes arrived: a client resumes at ``offset``."""
    meta = chunked.load(ctx.storage, session_id, user.name, admin=user.role == Role.ADMIN)
    return _state(ctx, meta)


@router.put(
    "/sessions/{session_id}",
    response_model=SessionState,
    responses={
        **not_found("upload session"),
        **conflict("The chunk does not start where the received bytes end"),
        **STORAGE_FULL,
        413: {"model": ErrorMessage, "description": "More bytes than declared, or over 64 MiB"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_chunk(
    session_id: str,
    request: Request,
    ctx: ContextDep,
    user: OperatorDep,
    offset: Annotated[int, Query(ge=0, description="Where this chunk starts in the file")],
) -> SessionState:
    """Append one chunk (raw bytes, at most 64 MiB) at ``offset``.

    Refused before a byte is read above the disk watermark (507); a chunk that fails while
    it streams is not kept, and the session's offset stays where it was.
    """
    meta = chunked.load(ctx.storage, session_id, user.name, admin=user.role == Role.ADMIN)
    await _check_space(ctx, f"chunk of upload session {meta.id}")
    writer = await asyncio.to_thread(chunked.ChunkWriter, ctx.storage, meta, offset)
    try:
        buffer = bytearray()
        async for part in request.stream():
            buffer += part
            if len(buffer) >= WRITE_BYTES:
                await asyncio.to_thread(writer.write, bytes(buffer))
                buffer.clear()
        await asyncio.to_thread(writer.write, bytes(buffer))
        await asyncio.to_thread(writer.commit)
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise
    return _state(ctx, meta)


@router.post(
    "/sessions/finish",
    response_model=UploadResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        **not_found("upload session"),
        **conflict("A session is incomplete, or a series is already held"),
        **STORAGE_FULL,
        **REFUSED,
    },
)
async def finish_sessions(
    body: SessionsFinish, request: Request, ctx: ContextDep, user: OperatorDep
) -> UploadResult:
    """Check and store the sessions' files as one upload.

    A refusal the client can mend without sending the bytes again (an unknown session or
    rule, a session still missing bytes, storage above the watermark) keeps every session;
    once the files were checked the sessions end, whether they were stored or refused.
    """
    await _known_rule(ctx, body.rule_id)
    admin = user.role == Role.ADMIN
    metas = [chunked.load(ctx.storage, sid, user.name, admin=admin) for sid in body.session_ids]
    await _check_space(ctx)
    with contextlib.ExitStack() as stack:
        sources: list[tuple[str, IO[bytes]]] = [
            (m.filename, stack.enter_context(chunked.complete_file(ctx.storage, m))) for m in metas
        ]
        staging = await asyncio.to_thread(ingest.staging_dir, ctx.storage)
        try:
            return await store_upload(
                ctx, user, sources, rule_id=body.rule_id, peer_ip=_peer(request), staging=staging
            )
        finally:
            await asyncio.to_thread(ingest.discard, staging)
            for meta in metas:
                await asyncio.to_thread(chunked.close, ctx.storage, meta.id)
