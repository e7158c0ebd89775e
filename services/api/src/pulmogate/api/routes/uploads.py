"""POST /api/v1/uploads (multipart) and resumable /api/v1/uploads/sessions: a zip or DICOM
files become series routed like received ones."""

import asyncio
import contextlib
from typing import IO, Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile, status
from pydantic import BaseModel, Field

from pulmogate.api.access import Operator
from pulmogate.api.auditing import audit_change
from pulmogate.api.auth import CurrentUser
from pulmogate.api.crud import rules as rules_crud
from pulmogate.api.deps import ContextDep, SessionDep
from pulmogate.api.operations_schemas import UploadResult
from pulmogate.api.routes.responses import Responses, conflict, not_found
from pulmogate.api.schemas import ErrorMessage
from pulmogate.api.uploads import chunked, ingest
from pulmogate.api.uploads.unpack import UnsafeUpload
from pulmogate.common.db.accounts import Role
from pulmogate.common.disk import watermark_refusal
from pulmogate.common.runtime import Context

router = APIRouter(prefix="/uploads", tags=["uploads"])

MAX_CHUNK = 64 * 1024**2
STORAGE_FULL: Responses = {
    507: {"model": ErrorMessage, "description": "Storage above its watermark"}
}
REFUSED: Responses = {
    422: {"model": ErrorMessage, "description": "A file is unsafe or not a CT instance"}
}


async def _check_space(ctx: Context) -> None:
    full = await asyncio.to_thread(
        watermark_refusal, ctx.storage.root, ctx.settings.disk_max_used_percent
    )
    if full:
        raise ingest.StorageFull(f"upload refused: {full}")


async def store_upload(
    ctx: Context,
    user: CurrentUser,
    sources: list[tuple[str, IO[bytes]]],
    *,
    rule_id: int | None,
    peer_ip: str,
) -> UploadResult:
    """Check every file, file them as received instances and announce their series."""
    staging = await asyncio.to_thread(ingest.staging_dir, ctx.storage)
    try:
        try:
            items = await asyncio.to_thread(ingest.stage_and_check, sources, staging)
        except UnsafeUpload as exc:
            raise ingest.UploadRefused(f"{exc.name}: {exc.reason}") from exc
        await ingest.check_series_are_new(ctx.db, {i.series_uid for i in items})
        placed = await asyncio.to_thread(ingest.file_into_storage, items, ctx.storage)
        try:
            return await ingest.record_upload(
                ctx.db,
                items,
                placed,
                rule_id=rule_id,
                user=user.name,
                peer_ip=peer_ip,
                called_ae=ctx.settings.ae_title,
                audit=lambda s, result: audit_change(
                    s,
                    user,
                    "upload.create",
                    f"series {', '.join(str(x.series_id) for x in result.series)}",
                    {"files": result.files, "rule_id": rule_id},
                ),
            )
        except BaseException:
            for path in placed.values():
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
    finally:
        await asyncio.to_thread(ingest.discard, staging)


def _peer(request: Request) -> str:
    return request.client.host if request.client else ""


@router.post(
    "",
    response_model=UploadResult,
    status_code=status.HTTP_201_CREATED,
    responses={**conflict("A series of the upload is already held"), **STORAGE_FULL, **REFUSED},
)
async def upload(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    user: Operator,
    files: Annotated[list[UploadFile], File(description="DICOM files and/or zips of them")],
    rule_id: Annotated[
        int | None, Form(description="Route with this rule; empty = match rules as usual")
    ] = None,
) -> UploadResult:
    """Check every file (zip-slip, zip bombs, symlinks, non-DICOM are refused), store, route."""
    if rule_id is not None:
        await rules_crud.get_rule(session, rule_id)
    await session.close()
    await _check_space(ctx)
    sources: list[tuple[str, IO[bytes]]] = [(f.filename or "upload", f.file) for f in files]
    return await store_upload(ctx, user, sources, rule_id=rule_id, peer_ip=_peer(request))


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
    responses={413: {"model": ErrorMessage, "description": "Declared size over the limit"}},
)
async def open_session(body: SessionCreate, ctx: ContextDep, user: Operator) -> SessionState:
    """Start a resumable upload of one file."""
    meta = await asyncio.to_thread(
        chunked.open_session, ctx.storage, body.filename, body.size, user.name
    )
    return _state(ctx, meta)


@router.get(
    "/sessions/{session_id}", response_model=SessionState, responses=not_found("upload session")
)
async def session_state(session_id: str, ctx: ContextDep, user: Operator) -> SessionState:
    """How many bytes arrived: a client resumes at ``offset``."""
    meta = chunked.load(ctx.storage, session_id, user.name, admin=user.role == Role.ADMIN)
    return _state(ctx, meta)


@router.put(
    "/sessions/{session_id}",
    response_model=SessionState,
    responses={
        **not_found("upload session"),
        **conflict("The chunk does not start where the received bytes end"),
        413: {"model": ErrorMessage, "description": "More bytes than declared"},
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
    user: Operator,
    offset: Annotated[int, Query(ge=0, description="Where this chunk starts in the file")],
) -> SessionState:
    """Append one chunk (raw bytes, at most 64 MiB) at ``offset``."""
    meta = chunked.load(ctx.storage, session_id, user.name, admin=user.role == Role.ADMIN)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_CHUNK:
            raise chunked.TooLarge(f"a chunk may be at most {MAX_CHUNK // 1024**2} MiB")
        parts.append(part)
    await asyncio.to_thread(chunked.append, ctx.storage, meta, offset, b"".join(parts))
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
    body: SessionsFinish, request: Request, ctx: ContextDep, session: SessionDep, user: Operator
) -> UploadResult:
    """Check and store the sessions' files as one upload; the sessions end either way."""
    if body.rule_id is not None:
        await rules_crud.get_rule(session, body.rule_id)
    await session.close()
    admin = user.role == Role.ADMIN
    metas = [chunked.load(ctx.storage, sid, user.name, admin=admin) for sid in body.session_ids]
    await _check_space(ctx)
    with contextlib.ExitStack() as stack:
        sources: list[tuple[str, IO[bytes]]] = [
            (m.filename, stack.enter_context(chunked.complete_file(ctx.storage, m))) for m in metas
        ]
        try:
            return await store_upload(
                ctx, user, sources, rule_id=body.rule_id, peer_ip=_peer(request)
            )
        finally:
            for meta in metas:
                await asyncio.to_thread(chunked.close, ctx.storage, meta.id)
