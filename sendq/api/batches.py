"""``/v1/batches``: many messages in one call (JSON, or a CSV file streamed row by row), batch previews with
counts per status, and cancel or reschedule a whole batch."""

import asyncio
from datetime import datetime
from typing import IO, Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from scheduler import batching
from scheduler.batching import BatchIntake, ItemResult
from sendq import keys
from sendq.api.auth import Key, subaccount_of
from sendq.api.messages import new_message, scheduler_of
from sendq.api.problems import ApiProblem, responses
from sendq.api.schemas import (
    BatchCreated,
    BatchIn,
    BatchOut,
    BatchPage,
    CancelReport,
    ItemOut,
    RescheduleIn,
    RescheduleReport,
)
from sendq.batches import BatchStore
from sendq.csvrows import CsvDefaults, CsvFormatError, batch_items, check_file, open_text, read_rows
from sendq.errors import InvalidInput
from sendq.listing import InvalidCursor, decode_cursor, encode_cursor
from sendq.message import NewMessage, utcnow
from sendq.settings import Settings

router = APIRouter(prefix="/v1/batches", tags=["batches"])

#: rows read from an uploaded file before they are programmed (bounds memory and event-loop pauses; several
#: ``batching.CHUNK``s, so that intake keeps two chunks in flight)
_ROWS_PER_CHUNK = 2000


def _items(results: list[ItemResult]) -> list[ItemOut]:
    out = []
    for r in results:
        if r.message is not None:
            out.append(ItemOut(index=r.number, message_id=r.message.id, status=r.message.status, created=r.created))
        elif r.error is not None:
            out.append(ItemOut(index=r.number, field=r.error.field, reason=r.error.reason))
    return out


@router.post("", status_code=201, response_model=BatchCreated, responses=responses(400, 401, 404, 413, 422, 503))
async def create_batch(request: Request, body: BatchIn, key: Key) -> BatchCreated:
    """Program many messages as one batch. Valid items are accepted even when others are refused; each item
    answers with its message id or its error."""
    settings: Settings = request.app.state.settings
    if len(body.messages) > settings.api_max_batch_items:
        raise ApiProblem(
            413,
            "Request too large",
            f"messages: at most {settings.api_max_batch_items} items per batch (SENDQ_API_MAX_BATCH_ITEMS)",
            field="messages",
        )
    sub = subaccount_of(key, body.subaccount)
    parsed: list[tuple[int, NewMessage | InvalidInput]] = []
    for index, item in enumerate(body.messages):
        if index and not index % _ROWS_PER_CHUNK:
            # Checking 10,000 items takes a good part of a second: let the other requests (and Redis connects,
            # which time out after a second) have the event loop in between.
            await asyncio.sleep(0)
        try:
            # The batch's created_by is the default of its items (an item may name its own).
            parsed.append((index, new_message(key, item, subaccount=sub, created_by=body.created_by)))
        except InvalidInput as exc:
            parsed.append((index, InvalidInput(f"messages.{index}.{exc.field}", exc.reason)))
    intake = await BatchIntake.start(scheduler_of(request), sub, created_by=body.created_by or key.label)
    results = await intake.add(parsed)
    batch = await intake.finish()
    return BatchCreated(**batch.model_dump(), items=_items(results))


@router.post("/file", status_code=201, response_model=BatchCreated, responses=responses(400, 401, 404, 413, 422, 503))
async def upload_batch(
    request: Request,
    key: Key,
    file: Annotated[
        UploadFile,
        File(
            description="CSV: columns to, body (or template, var.NAME), optional channel, "
            "send_at, reference_id, validity"
        ),
    ],
    channel: Annotated[str, Form(max_length=20)] = "sms",
    send_at: Annotated[datetime | None, Form()] = None,
    created_by: Annotated[str | None, Form(max_length=200)] = None,
    subaccount: Annotated[str | None, Form(max_length=64)] = None,
) -> BatchCreated:
    """A CSV file as one batch; its name is kept on the batch and on every message. Read row by row."""
    settings: Settings = request.app.state.settings
    sub = subaccount_of(key, subaccount)
    name = (file.filename or "upload.csv").rsplit("/", 1)[-1][:255] or "upload.csv"
    defaults = CsvDefaults(
        subaccount=sub,
        channel=channel,
        send_at=send_at,
        file_name=name,
        created_by=created_by or key.label or f"key:{key.id}",
    )
    # First pass, in a thread (it parses every row): a file that breaks at row 30,000 (bad quoting, not UTF-8,
    # too many rows) must program nothing, or fixing and re-uploading it would send the first rows twice.
    await asyncio.to_thread(_check_file, file.file, defaults, settings.api_max_csv_rows)
    file.file.seek(0)
    text = open_text(file.file)
    try:
        rows = read_rows(text, defaults, max_rows=settings.api_max_csv_rows)
        intake = await BatchIntake.start(scheduler_of(request), sub, created_by=defaults.created_by, file_name=name)
        results: list[ItemResult] = []
        while chunk := batch_items(rows, _ROWS_PER_CHUNK):
            results += await intake.add(chunk)
            await asyncio.sleep(0)
    finally:
        text.detach()
    batch = await intake.finish()
    return BatchCreated(**batch.model_dump(), items=[i for i in _items(results) if i.field is not None])


def _check_file(binary: IO[bytes], defaults: CsvDefaults, max_rows: int) -> None:
    """Read the whole file once without writing anything; a file-level problem is a 422 naming ``file``."""
    try:
        check_file(binary, defaults, max_rows=max_rows)
    except CsvFormatError as exc:
        where = f" (row {exc.row})" if exc.row else ""
        raise ApiProblem(422, "Invalid input", f"file: {exc}{where}", field="file") from None


@router.get("", response_model=BatchPage, responses=responses(401, 404, 422, 503))
async def list_batches(
    request: Request,
    key: Key,
    file_name: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    subaccount: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> BatchPage:
    """The subaccount's batches, newest first (filter by file name)."""
    sub = subaccount_of(key, subaccount)
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor)[0]
        except InvalidCursor as exc:
            raise ApiProblem(422, "Invalid input", f"cursor: {exc}", field="cursor") from None
    store = BatchStore(scheduler_of(request).store.redis)
    rows = await store.ids(sub, file_name=file_name, limit=limit, before_ms=before)
    batches = await store.get_many(sub, [i for i, _ in rows])
    nxt = encode_cursor(rows[-1][1], rows[-1][0]) if len(rows) == limit else None
    return BatchPage(items=batches, next_cursor=nxt)


async def _batch(request: Request, key: Key, batch_id: str, subaccount: str | None) -> tuple[str, BatchStore]:
    sub = subaccount_of(key, subaccount)
    store = BatchStore(scheduler_of(request).store.redis)
    if await store.get(sub, batch_id) is None:
        raise ApiProblem(404, "Not found", f"no batch {batch_id!r}")
    return sub, store


@router.get("/{batch_id}", response_model=BatchOut, responses=responses(401, 404, 422, 503))
async def get_batch(
    request: Request, batch_id: str, key: Key, subaccount: Annotated[str | None, Query(max_length=64)] = None
) -> BatchOut:
    """The preview: content, channel, number of messages, counts per status, first and last sent time, who."""
    sub, store = await _batch(request, key, batch_id, subaccount)
    found = await store.get(sub, batch_id)
    assert found is not None
    return found


async def _message_ids(request: Request, sub: str, batch_id: str) -> list[str]:
    redis = scheduler_of(request).store.redis
    raw = await redis.zrange(keys.index(sub, "batch", batch_id), 0, -1)
    return [i.decode() for i in raw]


@router.post("/{batch_id}/cancel", response_model=CancelReport, responses=responses(401, 404, 422, 503))
async def cancel_batch(
    request: Request, batch_id: str, key: Key, subaccount: Annotated[str | None, Query(max_length=64)] = None
) -> CancelReport:
    """Cancel every cancellable message of the batch; the others are counted by the status that kept them."""
    sub, _ = await _batch(request, key, batch_id, subaccount)
    done = await batching.cancel_batch(scheduler_of(request), sub, batch_id, by=key.label or f"key:{key.id}")
    return CancelReport.model_validate({"cancelled": done.cancelled, "not_cancelled": done.not_cancelled})


@router.post(
    "/{batch_id}/reschedule", response_model=RescheduleReport, responses=responses(400, 401, 404, 413, 422, 503)
)
async def reschedule_batch(
    request: Request,
    batch_id: str,
    body: RescheduleIn,
    key: Key,
    subaccount: Annotated[str | None, Query(max_length=64)] = None,
) -> RescheduleReport:
    """A new send time for the batch's programmed and blocked-time messages."""
    if body.send_at.utcoffset() is None:
        raise ApiProblem(422, "Invalid input", "send_at: must be timezone-aware", field="send_at")
    sub, _ = await _batch(request, key, batch_id, subaccount)
    scheduler = scheduler_of(request)
    try:
        # The horizon is the same for every message: refuse before any moves.
        scheduler.check_horizon("send_at", body.send_at, utcnow())
    except InvalidInput as exc:
        raise ApiProblem(422, "Invalid input", f"send_at: {exc.reason}", field="send_at") from None
    ids = await _message_ids(request, sub, batch_id)
    done, skipped = await batching.reschedule_messages(scheduler, ids, body.send_at)
    return RescheduleReport(rescheduled=done, skipped=dict(skipped))
