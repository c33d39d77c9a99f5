"""A real server with bearer tokens (and, for the TLS tests, certificates) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from service import WorkflowServer
from service._pb import workflow_pb2_grpc as pb_grpc
from service.auth import TokenRegistry
from service.store import open_store
from tests.clients.helpers import all_workflows

from .certs import Certificates, make_certificates


@dataclass(frozen=True)
class Token:
    secret: str
    scopes: list[str]
    workflows: list[str] | None = None
    hashed: bool = True  # listed as token_sha256 rather than token


def _tokens() -> dict[str, Token]:
    new = secrets.token_urlsafe
    return {
        "admin": Token(new(24), ["*"], hashed=False),
        "reader": Token(new(24), ["read"]),
        "runner": Token(new(24), ["run"]),
        "operator": Token(new(24), ["control"]),
        "echo-team": Token(new(24), ["run", "control"], ["echo", "approval"]),
    }


TOKENS = _tokens()


def token_document(tokens: dict[str, Token] = TOKENS) -> str:
    entries: list[dict[str, Any]] = []
    for name, t in tokens.items():
        entry: dict[str, Any] = {"name": name, "scopes": t.scopes}
        if t.hashed:
            entry["token_sha256"] = hashlib.sha256(t.secret.encode()).hexdigest()
        else:
            entry["token"] = t.secret
        if t.workflows is not None:
            entry["workflows"] = t.workflows
        entries.append(entry)
    return json.dumps({"tokens": entries}, indent=2)


def md(name: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the named token."""
    return (("authorization", f"Bearer {TOKENS[name].secret}"),)


@dataclass
class Secured:
    server: WorkflowServer
    port: int
    channel: grpc.aio.Channel

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stub(self) -> pb_grpc.WorkflowServiceStub:
        return pb_grpc.WorkflowServiceStub(self.channel)


async def serve_secured(store: str = "memory", **options: Any) -> tuple[WorkflowServer, int]:
    registry = TokenRegistry.parse(token_document(), "test tokens")
    server = WorkflowServer(all_workflows(), store=open_store(store), tokens=registry, **options)
    return server, await server.start("127.0.0.1", 0)


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory" if request.param == "memory" else f"sqlite:///{tmp_path}/runs.db"


@pytest.fixture
async def secured() -> AsyncIterator[Secured]:
    """A server that requires the tokens in TOKENS; a plaintext channel to it."""
    server, port = await serve_secured()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Secured(server, port, channel)
    finally:
        await server.stop(0)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    path.write_text(token_document())
    return path
