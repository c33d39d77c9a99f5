"""TLS and mutual TLS with throw-away certificates; the Python clients (async and sync)
connect with TLS and a token, and keep sending the token when a stream resumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from workflow_client import (
    PermissionDeniedError,
    SyncWorkflowClient,
    UnauthenticatedError,
    UnavailableError,
    WorkflowClient,
)

from service import WorkflowServer
from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc
from service.auth import TokenRegistry
from service.tls import server_credentials
from tests.clients.helpers import ServerThread, TcpProxy, all_workflows

from .certs import Certificates
from .conftest import TOKENS, token_document


def tls_options(certs: Certificates, mutual: bool) -> dict[str, Any]:
    return {
        "tokens": TokenRegistry.parse(token_document(), "test tokens"),
        "tls": server_credentials(
            str(certs.server.cert), str(certs.server.key), str(certs.ca) if mutual else None
        ),
    }


@dataclass
class TlsServed:
    server: WorkflowServer
    port: int
    certs: Certificates

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, token: str | None = "admin", **options: Any) -> WorkflowClient:
        secret = TOKENS[token].secret if token else None
        return WorkflowClient(self.address, token=secret, **{"reconnect_attempts": 0, **options})


async def _serve(certs: Certificates, mutual: bool) -> AsyncIterator[TlsServed]:
    server = WorkflowServer(all_workflows(), **tls_options(certs, mutual))
    port = await server.start("127.0.0.1", 0)
    try:
        yield TlsServed(server, port, certs)
    finally:
        await server.stop(0)


@pytest.fixture
async def tls(certs: Certificates) -> AsyncIterator[TlsServed]:
    """TLS and tokens; no client certificate required."""
    async for served in _serve(certs, mutual=False):
        yield served


@pytest.fixture
async def mtls(certs: Certificates) -> AsyncIterator[TlsServed]:
    """TLS, tokens and client certificates signed by the test CA."""
    async for served in _serve(certs, mutual=True):
        yield served


async def test_plaintext_is_refused_when_tls_is_on(tls: TlsServed) -> None:
    async with grpc.aio.insecure_channel(tls.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    async with tls.client() as plain:  # the client's default: plaintext
        with pytest.raises(UnavailableError):
            await plain.list_workflows()


async def test_the_async_client_runs_over_tls_with_a_token(tls: TlsServed) -> None:
    async with tls.client(root_certificates=tls.certs.ca_pem) as client:
        assert await client.run("echo", message="over tls") == "over tls"
        assert "echo" in [w.name for w in await client.list_workflows()]
    async with tls.client(token=None, root_certificates=tls.certs.ca_pem) as anonymous:
        with pytest.raises(UnauthenticatedError) as unauth:
            await anonymous.list_workflows()
        assert unauth.value.code == grpc.StatusCode.UNAUTHENTICATED
    async with tls.client(token="reader", root_certificates=tls.certs.ca_pem) as reader:
        with pytest.raises(PermissionDeniedError) as denied:
            await reader.run("echo", message="x")
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_server_certificate_from_an_untrusted_ca_is_refused(tls: TlsServed) -> None:
    # tls=True trusts the system's CAs, which did not sign the test server's certificate.
    async with tls.client(tls=True) as client:
        with pytest.raises(UnavailableError):
            await client.list_workflows()


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(mtls: TlsServed) -> None:
    certs = mtls.certs
    async with mtls.client(root_certificates=certs.ca_pem) as no_cert:
        with pytest.raises(UnavailableError):
            await no_cert.list_workflows()
    async with mtls.client(
        root_certificates=certs.ca_pem,
        client_cert=certs.stranger.cert_pem,
        client_key=certs.stranger.key_pem,
    ) as stranger:
        with pytest.raises(UnavailableError):
            await stranger.list_workflows()
    async with mtls.client(
        root_certificates=certs.ca_pem,
        client_cert=certs.client.cert_pem,
        client_key=certs.client.key_pem,
    ) as client:
        assert await client.run("echo", message="mutual") == "mutual"


async def test_a_resumed_stream_still_carries_the_token(mtls: TlsServed) -> None:
    """Through a proxy whose connections are cut: every reconnect authenticates again."""
    proxy = TcpProxy(mtls.port)
    await proxy.start()
    certs = mtls.certs
    try:
        async with WorkflowClient(
            proxy.address,
            token=TOKENS["runner"].secret,
            root_certificates=certs.ca_pem,
            client_cert=certs.client.cert_pem,
            client_key=certs.client.key_pem,
            reconnect_delay=0.05,
            # The proxy's address is 127.0.0.1 too, which the server certificate names.
        ) as client:
            handle = client.stream("ticker", count=20, interval_ms=20)
            events = []
            async for event in handle.events():
                events.append(event)
                if len(events) in (3, 12):
                    assert proxy.drop() > 0
            assert await handle.result() == 20
    finally:
        await proxy.close()
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].kind == "RUN_SUCCEEDED"
    assert proxy.accepted >= 3  # it really reconnected after each cut


def test_client_options_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="client_cert and client_key"):
        WorkflowClient("127.0.0.1:1", client_cert=b"x")
    with pytest.raises(ValueError, match="token"):
        WorkflowClient("127.0.0.1:1", token="Bearer abc")
    with pytest.raises(ValueError, match="token"):
        WorkflowClient("127.0.0.1:1", token=" ")


@pytest.fixture(scope="module")
def mtls_thread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    from .certs import make_certificates

    certs = make_certificates(tmp_path_factory.mktemp("thread-certs"))
    thread = ServerThread(**tls_options(certs, mutual=True)).start()
    thread.certs = certs  # type: ignore[attr-defined]
    try:
        yield thread
    finally:
        thread.stop()


def test_the_sync_client_runs_over_mutual_tls_with_a_token(mtls_thread: ServerThread) -> None:
    certs: Certificates = mtls_thread.certs  # type: ignore[attr-defined]
    options: dict[str, Any] = {
        "root_certificates": certs.ca_pem,
        "client_cert": certs.client.cert_pem,
        "client_key": certs.client.key_pem,
    }
    with SyncWorkflowClient(mtls_thread.address, token=TOKENS["echo-team"].secret, **options) as c:
        assert c.run("echo", message="sync") == "sync"
        handle = c.start("approval", question="ok?")
        kinds = []
        for event in handle.events():
            kinds.append(event.kind)
            if event.kind == "INPUT_REQUIRED":
                handle.send_event("HumanResponseEvent", response="yes")
        assert kinds[-1] == "RUN_SUCCEEDED"
        assert [r.workflow for r in c.list_runs()] == ["approval", "echo"]
        with pytest.raises(PermissionDeniedError):
            c.run("ticker", count=1)
    with (
        SyncWorkflowClient(mtls_thread.address, **options) as anonymous,
        pytest.raises(UnauthenticatedError),
    ):
        anonymous.get_run("x")
