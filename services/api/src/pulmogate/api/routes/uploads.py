"""POST /api/v1/uploads: a zip or DICOM files become series routed like received ones."""

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile, status

from pulmogate.api.access import Operator
from pulmogate.api.auditing import audit_change
from pulmogate.api.crud import rules as rules_crud
from pulmogate.api.deps import ContextDep, SessionDep
from pulmogate.api.operations_schemas import UploadResult
from pulmogate.api.routes.responses import conflict
from pulmogate.api.schemas import ErrorMessage
from pulmogate.api.uploads import ingest
from pulmogate.api.uploads.unpack import UnsafeUpload
from pulmogate.common.disk import watermark_refusal

router = APIRouter(prefix="/uploads", tags=["uploads"])


@router.post(
    "",
    response_model=UploadResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        **conflict("A series of the upload is already held"),
        507: {"model": ErrorMessage, "description": "Storage above its watermark"},
    },
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
    settings = ctx.settings
    full = await asyncio.to_thread(
        watermark_refusal, ctx.storage.root, settings.disk_max_used_percent
    )
    if full:
        raise ingest.StorageFull(f"upload refused: {full}")
    staging = await asyncio.to_thread(ingest.staging_dir, ctx.storage)
    try:
        sources = [(f.filename or "upload", f.file) for f in files]
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
                peer_ip=request.client.host if request.client else "",
                called_ae=settings.ae_title,
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
