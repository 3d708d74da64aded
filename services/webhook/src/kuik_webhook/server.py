"""The HTTPS admission endpoint: aiohttp app, and a serving certificate that follows its files.

cert-manager (or a mounted Secret) replaces the certificate files in place; `CertReloader`
polls them (inode, size, mtime, following symlinks as kubelet's `..data` swap needs) and loads
the new pair into the same `ssl.SSLContext`, so new connections get it without a restart. A
pair that does not load (caught mid-write) is retried at the next poll; the old one stays.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import zlib
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from kuik_webhook.handler import AdmissionHandler
from kuikcore.config import ListenAddress
from kuikcore.observe import serve_app

__all__ = ["MAX_BODY", "AdmissionServer", "CertReloader", "build_app"]

log = structlog.get_logger("kuik.webhook")

MAX_BODY = 16 * 1024 * 1024  # an AdmissionReview carries object and oldObject: a few MiB at most
_IN_THREAD = 256 * 1024  # compressed bodies above this are inflated off the event loop


class _Undecodable(ValueError):
    """The body's Content-Encoding is unknown or the body is not in it."""


class _TooLarge(ValueError):
    """The body inflates past `MAX_BODY`."""


def _inflate(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding, at most `MAX_BODY` bytes.

    Done here rather than by aiohttp, which answers a bad deflate body itself (a bare 400, no
    log line) and passes a body in an unknown encoding on as if it were plain."""
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":  # zlib-wrapped as HTTP says, or raw as some clients send
        wrapped = body[:1] == b"\x78"
        inflater = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    else:
        raise _Undecodable(f"unsupported Content-Encoding {encoding[:40]!r}")
    try:
        out = inflater.decompress(body, MAX_BODY + 1)
    except zlib.error as exc:
        raise _Undecodable(f"body is not {encoding}: {exc}") from None
    if len(out) > MAX_BODY:
        del out  # not kept alive by the exception's traceback
        raise _TooLarge(encoding)
    if not inflater.eof or inflater.unused_data:
        raise _Undecodable(f"body is not one complete {encoding} stream")
    return out


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class CertReloader:
    """An `ssl.SSLContext` for serving, reloaded when the certificate or key file changes."""

    def __init__(self, cert: Path, key: Path, *, interval: float = 1.0) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.interval = interval
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(self.cert, self.key)  # a bad pair at startup is fatal
        self._stamps = self._read_stamps()
        self.reloads = 0

    def _read_stamps(self) -> tuple[tuple[int, int, int], ...] | None:
        try:
            return (_stamp(self.cert), _stamp(self.key))
        except OSError:
            return None

    def poll(self) -> bool:
        """Reload if the files changed; True when a new pair was loaded."""
        stamps = self._read_stamps()
        if stamps is None or stamps == self._stamps:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("serving certificate not reloaded, keeping the current one", error=str(exc))
            return False
        self._stamps = stamps
        self.reloads += 1
        log.info("serving certificate reloaded", cert=str(self.cert))
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.poll)


def build_app(handler: AdmissionHandler) -> web.Application:
    def too_large(encoding: str) -> web.Response:
        # answered, not raised: an exception's traceback would keep the 16 MiB buffer alive
        log.warning("AdmissionReview too large", limit=MAX_BODY, encoding=encoding[:40])
        body = b'{"error":"AdmissionReview too large: more than %d bytes"}' % MAX_BODY
        return web.Response(body=body, status=413, content_type="application/json")

    async def mutate(request: web.Request) -> web.Response:
        """200 allowed, 400 malformed (bad or unknown Content-Encoding too), 413 too large."""
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if request.content_length is not None and request.content_length > MAX_BODY:
            return too_large(encoding)  # not even read
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
            return too_large(encoding)
        except RequestPayloadError as exc:
            answer = handler.malformed(" ".join(str(exc).split()))
        else:
            try:
                if len(raw) > _IN_THREAD and encoding not in ("", "identity"):
                    body = await asyncio.to_thread(_inflate, raw, encoding)
                else:
                    body = _inflate(raw, encoding)
            except _TooLarge:
                return too_large(encoding)
            except _Undecodable as exc:
                answer = handler.malformed(" ".join(str(exc).split()))
            else:
                del raw
                answer = await handler.handle(body)
        return web.Response(body=answer.body, status=answer.status, content_type="application/json")

    # Bodies are inflated by `_inflate`, which answers every bad encoding with a logged 400.
    app = web.Application(client_max_size=MAX_BODY, handler_args={"auto_decompress": False})
    app.router.add_post("/mutate", mutate)
    app.router.add_post("/mutate--v1-pod", mutate)  # upstream's path, so registrations carry over
    return app


class AdmissionServer:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner: web.AppRunner | None = None

    async def start(self, listen: ListenAddress, ssl_context: ssl.SSLContext | None) -> None:
        self._runner = await serve_app(self.app, listen, ssl_context)

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("the admission server is not running")
        port: int = self._runner.addresses[0][1]
        return port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
