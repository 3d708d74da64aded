"""Local stand-ins for the clouds' identity and registry services, speaking their real protocols.

- `MotoServer`: moto in server mode (STS AssumeRoleWithWebIdentity, ECR GetAuthorizationToken and
  CreateRepository) on a free loopback port, with `aws_env` as IRSA sets a Pod's environment.
- `EcrFront`: a reverse proxy in front of a real `docker-registry` that answers 404 `NAME_UNKNOWN`
  for repositories moto's ECR does not hold, as ECR does (no implicit repository creation).
- `GceMetadata`: the GCE metadata server google-auth reads on GKE (`GCE_METADATA_HOST`), issuing
  short-lived access tokens it can later vouch for.
- `EntraServer`: a Microsoft Entra token endpoint over HTTPS (azure-identity accepts no other)
  for workload identity's client-assertion grant; `acr_routes` adds ACR's `/oauth2/exchange`
  to a `TokenIssuer`, whose refresh tokens are then the registry passwords.

Each keeps what it issued, so a `TokenIssuer` in front of a registry admits only a token that
really went through the exchange.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import trustme
from aiohttp import web

from kuik_testing.ports import free_port

__all__ = [
    "ACR_USER",
    "ECR_ACCOUNT",
    "EcrFront",
    "EntraServer",
    "GceMetadata",
    "IssuedTokens",
    "MotoServer",
    "acr_routes",
    "ecr_password",
]

ECR_ACCOUNT = "123456789012"  # moto's default account
ACR_USER = "00000000-0000-0000-0000-000000000000"


def ecr_password(account: str = ECR_ACCOUNT) -> str:
    """The registry password moto's GetAuthorizationToken hands out for `account`."""
    return f"{account}-auth-token"


@dataclass
class IssuedTokens:
    """Tokens a stand-in issued, with their expiry: `valid(token)` is what a verifier asks."""

    lifetime: float = 3600.0
    issued: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, prefix: str) -> str:
        token = f"{prefix}-{secrets.token_urlsafe(24)}"
        with self._lock:
            self.issued[token] = time.time() + self.lifetime
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            expires = self.issued.get(token)
        return expires is not None and time.time() < expires

    @property
    def count(self) -> int:
        return len(self.issued)


def _send_json(handler: BaseHTTPRequestHandler, status: int, doc: Any, **headers: str) -> None:
    body = json.dumps(doc).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


class _Threaded:
    """A ThreadingHTTPServer on a loopback port in a daemon thread, optionally over TLS."""

    _server: ThreadingHTTPServer | None = None

    def _serve(self, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --- AWS -------------------------------------------------------------------------------------


@dataclass
class MotoServer:
    """moto's server in a thread (`ThreadedMotoServer`): one process holds its backends."""

    port: int = 0
    _server: Any = None

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        self.port = self.port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.reset()
        return self

    def reset(self) -> None:
        """Forget every resource: moto's backends are per process, shared by every server."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST"))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def aws_env(self, token_file: Path, role_arn: str, region: str = "us-east-1") -> dict[str, str]:
        """A Pod's environment under IRSA (as EKS's webhook sets it), pointed at this server."""
        return {
            "AWS_ROLE_ARN": role_arn,
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ROLE_SESSION_NAME": "kuik-test",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(token_file.parent / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(token_file.parent / "no-aws-credentials"),
        }

    def client(self, service: str, region: str = "us-east-1") -> Any:
        """A boto3 client of the fixtures' own, with static test keys (moto does not check)."""
        import boto3

        make: Any = boto3.client  # the stubs type one overload per literal service name
        return make(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def web_identity_sessions(self) -> int:
        """How many AssumeRoleWithWebIdentity calls moto answered (the STS leg of IRSA)."""
        from moto.sts.models import sts_backends

        backend = sts_backends[ECR_ACCOUNT]["global"]
        return sum(1 for role in backend.assumed_roles if role.session_name == "kuik-test")

    def repositories(self) -> set[str]:
        ecr = self.client("ecr")
        return {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}


_V2_NAME_RE = re.compile(r"^/v2/(?P<name>.+?)/(?:blobs|manifests|tags)/")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)


@dataclass
class EcrFront:
    """ECR's repository rule in front of a real registry: unknown repositories are 404 NAME_UNKNOWN.

    Everything else (auth challenges, token flow, blobs, manifests) is the registry's own,
    proxied with the front's `Host` so the registry's upload locations point back here.
    """

    backend: str  # http://127.0.0.1:PORT of the registry
    exists: Callable[[str], bool]
    port: int = 0
    refused: list[str] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EcrFront:
        self.port = self.port or free_port()
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def setup() -> None:
            app = web.Application(client_max_size=1 << 30)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            self._session = aiohttp.ClientSession(auto_decompress=False)

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(setup())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("EcrFront did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def teardown() -> None:
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(teardown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = _V2_NAME_RE.match(request.path)
        if match is not None:
            name = match["name"]
            known = await asyncio.to_thread(self.exists, name)
            if not known:
                self.refused.append(name)
                body = {
                    "errors": [
                        {
                            "code": "NAME_UNKNOWN",
                            "message": f"The repository with name '{name}' does not exist "
                            f"in the registry with id '{ECR_ACCOUNT}'",
                        }
                    ]
                }
                return web.json_response(body, status=404)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = self.host
        data = request.content.iter_chunked(1 << 16) if request.body_exists else None
        async with self._session.request(
            request.method,
            self.backend + request.path_qs,
            headers=headers,
            data=data,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(1 << 16):
                    await response.write(chunk)
            await response.write_eof()
            return response


# --- GCP -------------------------------------------------------------------------------------


class GceMetadata(_Threaded):
    """The GCE metadata server's token protocol (`Metadata-Flavor: Google` both ways)."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.tokens = IssuedTokens(lifetime=lifetime)
        self.email = "kuik@kuik-test.iam.gserviceaccount.com"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def gcp_env(self) -> dict[str, str]:
        """Where google-auth looks for the metadata server (GKE's Workload Identity answers there)."""
        return {
            "GCE_METADATA_HOST": self.host,
            "GCE_METADATA_IP": self.host,
            "GOOGLE_CLOUD_PROJECT": "kuik-test",
        }

    def start(self) -> GceMetadata:
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Metadata-Flavor") != "Google":
                    _send_json(self, 403, {"error": "Missing Metadata-Flavor:Google header"})
                    return
                path = urlsplit(self.path).path.rstrip("/")
                # google-auth names the account "default" first, then by its email
                path = path.replace(
                    f"/service-accounts/{metadata.email}", "/service-accounts/default"
                )
                base = "/computeMetadata/v1/instance/service-accounts/default"
                flavor = {"Metadata_Flavor": "Google"}
                if path in ("", "/computeMetadata/v1"):
                    _send_json(self, 200, {}, **flavor)
                elif path == base + "/token":
                    lifetime = int(metadata.tokens.lifetime)
                    token = metadata.tokens.issue("ya29")
                    doc = {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}
                    _send_json(self, 200, doc, **flavor)
                elif path == base:
                    doc = {"email": metadata.email, "aliases": ["default"], "scopes": []}
                    _send_json(self, 200, doc, **flavor)
                elif path == base + "/email":
                    self._text(metadata.email)
                elif path == "/computeMetadata/v1/project/project-id":
                    self._text("kuik-test")
                else:
                    _send_json(self, 404, {"error": "not found"}, **flavor)

            def _text(self, text: str) -> None:
                body = text.encode()
                self.send_response(200)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", "application/text")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._serve(Handler, None)
        return self


# --- Azure -----------------------------------------------------------------------------------


class EntraServer(_Threaded):
    """Entra ID's OpenID metadata and v2.0 token endpoint for the federated client-assertion grant.

    The assertion must be the service account token the workload identity webhook projects
    (`federated_token`); the access tokens it issues are what `acr_routes` accepts.
    """

    def __init__(self, tenant: str = "kuik-tenant", client_id: str = "kuik-client") -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.federated_token = "eyJ.kubernetes-sa-token." + secrets.token_urlsafe(16)
        self.tokens = IssuedTokens(lifetime=3600.0)
        self.scopes: list[str] = []
        self._ca = trustme.CA()
        self._dir = tempfile.TemporaryDirectory(prefix="kuik-entra-")

    @property
    def authority(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        return Path(self._dir.name) / "ca.pem"

    def azure_env(self) -> dict[str, str]:
        """A Pod's environment under Azure Workload Identity, pointed at this server."""
        token_file = Path(self._dir.name) / "azure-identity-token"
        token_file.write_text(self.federated_token)
        return {
            "AZURE_AUTHORITY_HOST": self.authority,
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_TENANT_ID": self.tenant,
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
        }

    def start(self) -> EntraServer:
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        entra = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path.endswith("/.well-known/openid-configuration"):
                    base = f"{entra.authority}/{entra.tenant}"
                    doc = {
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "issuer": f"{base}/v2.0",
                        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    }
                    _send_json(self, 200, doc)
                else:
                    _send_json(self, 404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path != f"/{entra.tenant}/oauth2/v2.0/token":
                    _send_json(self, 404, {"error": "not_found"})
                    return
                if (
                    form.get("grant_type") != "client_credentials"
                    or form.get("client_id") != entra.client_id
                    or form.get("client_assertion") != entra.federated_token
                ):
                    _send_json(self, 401, {"error": "invalid_client"})
                    return
                entra.scopes.append(form.get("scope", ""))
                token = entra.tokens.issue("entra")
                doc = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
                _send_json(self, 200, doc)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._serve(Handler, context)
        return self

    def stop(self) -> None:
        super().stop()
        self._dir.cleanup()


def _fake_jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT-shaped token: ACR's refresh tokens are JWTs whose `exp` clients read."""

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(16)}"


def acr_routes(
    entra: EntraServer, refresh_tokens: IssuedTokens, service: str
) -> dict[str, Callable[[dict[str, str]], tuple[int, dict[str, Any]]]]:
    """`TokenIssuer.post_routes` for ACR's `/oauth2/exchange`: Entra token in, refresh token out.

    Pair it with `TokenIssuer(authenticate=...)` admitting `ACR_USER` with a valid refresh token.
    """

    def exchange(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if (
            form.get("grant_type") != "access_token"
            or form.get("service") != service
            or form.get("tenant") != entra.tenant
            or not entra.tokens.valid(form.get("access_token", ""))
        ):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid token"}]}
        exp = int(time.time() + refresh_tokens.lifetime)
        token = _fake_jwt({"exp": exp, "aud": service, "jti": secrets.token_hex(8)})
        with refresh_tokens._lock:
            refresh_tokens.issued[token] = float(exp)
        return 200, {"refresh_token": token}

    return {"/oauth2/exchange": exchange}
