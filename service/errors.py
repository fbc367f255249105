"""Errors as JSON: every failure answers ``{"status_code", "detail", "field", "errors"}`` (``schemas.ErrorBody``).

Status codes: 400 a body that is not JSON (or is empty); 422 JSON whose fields have the wrong type, range or shape
(``field`` names the first offender, ``errors`` lists all); 401 no or unknown token; 403 a token without the right
role; 404 unknown route, model, task or job; 409 a conflict (name taken, task already answered); 413 body too large;
503 a full queue (with Retry-After) or a service that is not ready. A client mistake never yields 500; a 500 means a
bug, is logged with its traceback, and its body says only that.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from service.batching import BatcherClosed, QueueFull
from service.schemas import ErrorBody, FieldProblem
from service.storage import Conflict, NotFound

log = logging.getLogger("prefsum.service")

DESCRIPTIONS = {
    400: "The body is not valid JSON (or is empty)",
    401: "No bearer token, or an unknown one",
    403: "The token's role may not do this (admin vs labeler)",
    404: "Unknown model, task, job or route",
    409: "Conflicts with the current state",
    413: "Request body larger than the service's limit",
    422: "A field has the wrong type, range or shape; `field` names it",
    503: "Queue full or service not ready; retry after Retry-After seconds",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer (all with the ErrorBody schema; 400 comes with every
    body, query or path parameter)."""
    codes = tuple(sorted({400, *codes}))
    return {
        c: ResponseSpec(data_container=ErrorBody, description=DESCRIPTIONS[c], generate_examples=False) for c in codes
    }


class ApiError(Exception):
    """Raised by routes: becomes a JSON error with this status."""

    def __init__(self, status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers or {}


def _json(status: int, detail: str, field: str | None = None, errors=None, headers=None) -> Response:
    return Response(
        ErrorBody(status_code=status, detail=detail, field=field, errors=errors or []),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _field_path(key: str) -> str:
    # Litestar reports the whole body as "data"; a field inside it as its JSON path ("inputs[0].post").
    return "body" if key in ("data", "") else key


def _validation(request: Request, exc: ValidationException) -> Response:
    extra = exc.extra if isinstance(exc.extra, list) else []
    detail = str(exc.detail)
    if detail.startswith("JSON is malformed"):
        return _json(400, f"{detail}; send a JSON object (Content-Type: application/json)", "body")
    problems: list[FieldProblem] = []
    for e in extra:
        if not isinstance(e, dict):
            continue
        key, message = str(e.get("key") or ""), str(e.get("message") or "")
        if e.get("source") == "body" and key == "data" and message == "'data'":
            return _json(400, "the request body is empty; send a JSON object (Content-Type: application/json)", "body")
        path = _field_path(key)
        m = re.match(r"Object (contains unknown|missing required) field `([^`]*)`", message)
        if m:  # name the field itself, and say what to do
            path = m.group(2) if path == "body" else f"{path}.{m.group(2)}"
            message += (
                "; remove it (see /schema for the fields this endpoint takes)"
                if m.group(1) == "contains unknown"
                else "; add it"
            )
        problems.append(FieldProblem(field=path, message=message))
    if not problems:
        return _json(400, detail)
    first = problems[0]
    return _json(422, f"{first.field}: {first.message}", first.field, problems)


def _api_error(request: Request, exc: ApiError) -> Response:
    headers = dict(exc.headers)
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return _json(exc.status, exc.detail, exc.field, headers=headers or None)


def _http(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    detail = str(exc.detail)
    headers = dict(exc.headers or {})
    if status == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}; see /schema for the API"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /schema for the API"
    elif status == 413:
        limit = request.route_handler.resolve_request_max_body_size() if request.scope.get("route_handler") else None
        detail = f"request body too large (limit {limit} bytes); send fewer or shorter inputs" if limit else detail
    elif status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if status >= 500:
        log.error("server error on %s %s: %s", request.method, request.url.path, detail)
    return _json(status, detail, headers=headers or None)


def _queue_full(request: Request, exc: QueueFull) -> Response:
    state = getattr(request.app.state, "service", None)
    if state is not None:
        state.metrics.rejected.inc(model=exc.name)
    return _json(503, str(exc), headers={"Retry-After": str(exc.retry_after)})


def _closed(request: Request, exc: BatcherClosed) -> Response:
    return _json(503, f"{exc}; retry against another replica or after restart", headers={"Retry-After": "5"})


def _not_found(request: Request, exc: NotFound) -> Response:
    return _json(404, str(exc))


def _conflict(request: Request, exc: Conflict) -> Response:
    return _json(409, str(exc))


def _value_error(request: Request, exc: ValueError) -> Response:
    # Engine input errors (EngineInputError, QueryTooLong, EvalInputError) are ValueErrors about what the client sent.
    name = type(exc).__name__
    if name in ("EngineInputError", "QueryTooLong", "EvalInputError", "JudgeUnavailable"):
        return _json(422, str(exc), _guess_field(str(exc)))
    return _internal(request, exc)


def _guess_field(message: str) -> str | None:
    head = message.split(" ", 1)[0]
    return head if head and ("[" in head or "." in head or head.isidentifier()) else None


def _recursion(request: Request, exc: RecursionError) -> Response:
    if "deserializ" in str(exc):  # msgspec refusing absurdly nested JSON from the client
        return _json(400, "the JSON body is nested too deeply; send a flat object as /schema describes", "body")
    return _internal(request, exc)


def _internal(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(HTTP_500_INTERNAL_SERVER_ERROR, "internal error; the server log has the details")


HANDLERS: dict[Any, Any] = {
    ValidationException: _validation,
    ApiError: _api_error,
    HTTPException: _http,
    QueueFull: _queue_full,
    BatcherClosed: _closed,
    NotFound: _not_found,
    Conflict: _conflict,
    ValueError: _value_error,
    RecursionError: _recursion,
    Exception: _internal,
}
