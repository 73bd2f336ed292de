"""ASGI middleware: security headers on every answer, and request bodies limited while they stream."""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable
from typing import BinaryIO

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)


class SecurityHeaders:
    """Adds the security headers to every response, error pages included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    """A request body past its limit, raised while it streams in (an HTTPException: the framework
    lets it through its body parsing, and the app's one handler answers it)."""

    code = "limit_exceeded"

    def __init__(self, limit_name: str, allowed: int) -> None:
        self.message = (
            f"The upload is larger than the limit {limit_name} ({allowed:,} bytes); nothing was imported."
        )
        super().__init__(413, self.message)


# The answer to a body refused before it is read (the app never sees the request): JSON under
# /api, else a page in the portal's look (an upload form's browser shows it).
_REFUSED_PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Too large · Member importer</title>'
    '<link rel="stylesheet" href="/static/portal.css"></head><body><main><h1>Too large</h1>'
    '<p class="error" role="alert">{message}</p><p><a href="/">Back</a></p></main></body></html>\n'
)


def _refusal(path: str, error: BodyTooLarge) -> tuple[bytes, bytes]:
    if path.startswith("/api/"):
        body = json.dumps({"error": {"code": error.code, "message": error.message}})
        return b"application/json", body.encode()
    page = _REFUSED_PAGE.format(message=html.escape(error.message))
    return b"text/html; charset=utf-8", page.encode()


UPLOAD_PATHS = re.compile(r"^(/orgs/\d+/import|/api/v1/orgs/\d+/imports)/?$")


def spooled_size(file: BinaryIO) -> int:
    """The size of an uploaded file where the form parser spooled it (memory, then a temporary
    file); the file is left at its start, to be stored a part at a time."""
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    return size


class BodyLimit:
    """Counts the body's bytes as they arrive and refuses (413) past the limit of its path.

    A declared Content-Length over the limit is refused before anything is read; a body that grows
    past it (chunked, or lying) is refused as soon as the limit is crossed.
    """

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], tuple[str, int]]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name, allowed = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > allowed:
            error = BodyTooLarge(name, allowed)
            content_type, body = _refusal(scope["path"], error)
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", content_type),
                        (b"connection", b"close"),
                        *SECURITY_HEADERS,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > allowed:
                    raise BodyTooLarge(name, allowed)
            return message

        await self.app(scope, limited, send)
