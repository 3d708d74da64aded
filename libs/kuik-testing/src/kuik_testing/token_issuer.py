"""A token service for distribution's `auth.token` mode, so tests exercise the real bearer flow.

The registry (a real `docker-registry` process) verifies the JWTs this issuer signs: ES256 with a
throwaway key whose certificate, issued by a throwaway trustme CA, travels in the `x5c` header;
the CA certificate is the registry's `rootcertbundle`. It runs in a thread on a loopback port
so sync and async tests (and skopeo) can all use it.
"""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["TokenIssuer", "TokenRequest"]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request the issuer answered (for tests that count token fetches)."""

    user: str | None
    scopes: tuple[str, ...]
    granted: bool


@dataclass
class TokenIssuer:
    """Grants every requested action to known users; `anonymous_actions` to everyone else.

    `authenticate(user, password)` admits users whose passwords are not known in advance (cloud
    stand-ins: a token some other service issued); `post_routes` answers POSTs by path with
    (status, JSON document) from the form fields (ACR's `/oauth2/exchange` beside the realm).
    """

    users: dict[str, str] = field(default_factory=dict)
    authenticate: Callable[[str, str], bool] | None = None
    post_routes: dict[str, Callable[[dict[str, str]], tuple[int, dict[str, Any]]]] = field(
        default_factory=dict
    )
    anonymous_actions: tuple[str, ...] = ()
    service: str = "kuik-test-registry"
    issuer: str = "kuik-test-issuer"
    expires_in: int = 300
    requests: list[TokenRequest] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None
    _key_pem: bytes = b""
    _x5c: list[str] = field(default_factory=list)

    def start(self) -> TokenIssuer:
        ca = trustme.CA()
        leaf = ca.issue_cert("kuik-token-issuer")
        self._key_pem = leaf.private_key_pem.bytes()
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._dir = tempfile.TemporaryDirectory(prefix="kuik-token-issuer-")
        ca.cert_pem.write_to_path(str(self.root_cert_path))
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._answer(self)

            def do_POST(self) -> None:
                issuer._answer_post(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    @property
    def realm(self) -> str:
        assert self._server is not None, "start() the issuer first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    @property
    def root_cert_path(self) -> Path:
        assert self._dir is not None, "start() the issuer first"
        return Path(self._dir.name) / "root.pem"

    def registry_config(self) -> dict[str, Any]:
        """The `extra_config` that points a RegistryServer at this issuer."""
        return {
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": self.service,
                    "issuer": self.issuer,
                    "rootcertbundle": str(self.root_cert_path),
                }
            }
        }

    # --- request handling (runs in the server thread) -----------------------------------------

    def _user(self, header: str | None) -> tuple[str | None, bool]:
        """(user, credentials valid); (None, True) for anonymous."""
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, False
        known = self.users.get(user)
        if known is not None and secrets.compare_digest(known, password):
            return user, True
        return user, self.authenticate is not None and self.authenticate(user, password)

    def _answer_post(self, handler: BaseHTTPRequestHandler) -> None:
        route = self.post_routes.get(urlsplit(handler.path).path)
        length = int(handler.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(handler.rfile.read(length).decode()).items()}
        status, doc = route(form) if route else (404, {"error": "no such route"})
        body = json.dumps(doc).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        scopes = tuple(query.get("scope", []))
        user, valid = self._user(handler.headers.get("Authorization"))
        self.requests.append(TokenRequest(user, scopes, valid))
        if not valid or query.get("service", [self.service])[0] != self.service:
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            handler.send_response(401)
            handler.send_header("Content-Type", "application/json")
            handler.end_headers()
            handler.wfile.write(body.encode())
            return
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if user else [a for a in wanted if a in self.anonymous_actions]
            if kind == "repository" and granted:
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = jwt.encode(claims, self._key_pem, algorithm="ES256", headers={"x5c": self._x5c})
        body = json.dumps({"token": token, "expires_in": self.expires_in})
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(body.encode())
