"""Errors as RFC 9457 problem documents (``application/problem+json``) that name the field and the reason.

Every error the API can answer is mapped here, so a client never sees a traceback or an HTML page, and the
OpenAPI document lists the problem shape for each status a route can return.
"""

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sendq.errors import InvalidInput, MessageNotFound

log = structlog.get_logger("sendq.api")

MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str
    reason: str


class Problem(BaseModel):
    """RFC 9457 problem details, plus the fields at fault."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    #: the first field at fault (dotted path into the request), when one is
    field: str | None = None
    errors: list[FieldError] = []


class ApiProblem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, field: str | None = None) -> None:
        super().__init__(detail or title)
        self.problem = Problem(
            title=title,
            status=status,
            detail=detail,
            field=field,
            errors=[FieldError(field=field, reason=detail or title)] if field else [],
        )


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True), status_code=problem.status, media_type=MEDIA_TYPE, headers=headers
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of a route for the problem statuses it may return."""
    titles = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "Not allowed for this key",
        404: "Not found",
        409: "Conflict with the current status",
        413: "Request too large",
        422: "Invalid input",
        503: "Redis unavailable",
    }
    # ``model`` registers Problem in the components; the problem documents are served as MEDIA_TYPE.
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        s: {"model": Problem, "description": titles[s], "content": {MEDIA_TYPE: {"schema": schema}}} for s in statuses
    }


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.problem.status == 401 else None
        return problem_response(exc.problem, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(field=_location(tuple(e.get("loc", ()))), reason=str(e.get("msg", "invalid")))
            for e in exc.errors()
        ]
        first = errors[0] if errors else FieldError(field="body", reason="invalid")
        return problem_response(
            Problem(
                title="Invalid input",
                status=422,
                detail=f"{first.field}: {first.reason}",
                field=first.field,
                errors=errors,
            )
        )

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        return problem_response(
            Problem(
                title="Invalid input",
                status=422,
                detail=f"{exc.field}: {exc.reason}",
                field=exc.field,
                errors=[FieldError(field=exc.field, reason=exc.reason)],
            )
        )

    @app.exception_handler(MessageNotFound)
    async def _not_found(request: Request, exc: MessageNotFound) -> JSONResponse:
        return problem_response(Problem(title="Not found", status=404, detail=str(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(Problem(title=str(exc.detail), status=exc.status_code), exc.headers)

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("api.redis_unavailable", error=repr(exc))
        return problem_response(Problem(title="Redis unavailable", status=503, detail="try again shortly"))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unhandled", path=request.url.path)
        return problem_response(Problem(title="Internal error", status=500, detail="logged on the server"))
