"""The async client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, struct_pb2

from ._auth import bearer_metadata, channel_credentials, open_channel
from ._errors import (
    RunCancelledError,
    RunError,
    RunFailedError,
    RunTimedOutError,
    UnavailableError,
    from_rpc_error,
    mapped_errors,
)
from ._ids import new_run_id
from ._pb import workflow_pb2 as pb
from ._pb import workflow_pb2_grpc as pb_grpc
from ._types import Event, Run, WorkflowInfo, event_from_pb, run_from_pb, workflow_from_pb

DEFAULT_ADDRESS = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Otherwise a keepalive ping queued behind an unanswered flow-control ping waits 1 min.
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
# Stream failures worth reconnecting for: the connection dropped or the server restarted.
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL})
_MAX_RETRY_AFTER = 30.0  # seconds: the most a server's RetryInfo can make a retry wait

_RUN_ERRORS: dict[str, type[RunError]] = {
    "FAILED": RunFailedError,
    "CANCELLED": RunCancelledError,
    "TIMED_OUT": RunTimedOutError,
}


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if data:
        s.update(data)
    return s


def _duration(timeout: float | timedelta | None) -> duration_pb2.Duration | None:
    if timeout is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout))
    return d


def result_of(run: Run) -> Any:
    """The run's result, or its ending as a :class:`RunError`."""
    error = _RUN_ERRORS.get(run.status)
    if error is not None:
        raise error(run)
    return run.result


class WorkflowClient:
    """Async client for workflow.v1.WorkflowService.

    ``async with WorkflowClient("host:port") as client: await client.run("echo", message="hi")``
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        channel: grpc.aio.Channel | None = None,
        reconnect_attempts: int = 10,
        reconnect_delay: float = 0.2,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_cert: bytes | None = None,
        client_key: bytes | None = None,
    ) -> None:
        """``token`` is sent as ``authorization: Bearer <token>`` with every call. TLS is on
        with ``tls=True`` or any certificate (PEM bytes): ``root_certificates`` to trust
        instead of the system's CAs, ``client_cert`` and ``client_key`` for mutual TLS.
        A ``channel`` given here is used as it is (its TLS settings are its own)."""
        self._metadata = bearer_metadata(token)
        self._own_channel = channel is None
        if channel is None:
            credentials = channel_credentials(tls, root_certificates, client_cert, client_key)
            channel = open_channel(address, credentials, CHANNEL_OPTIONS)
        self._channel = channel
        self._stub = pb_grpc.WorkflowServiceStub(self._channel)  # the async stub on aio
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay

    async def __aenter__(self) -> WorkflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_channel:
            await self._channel.close()

    @property
    def stub(self) -> pb_grpc.WorkflowServiceAsyncStub:
        """The raw stub; pass ``metadata=client.metadata`` to its calls on a server with
        authentication."""
        return self._stub

    @property
    def metadata(self) -> Sequence[tuple[str, str]] | None:
        """The call metadata carrying the token (None without one)."""
        return self._metadata

    @staticmethod
    def _request(
        workflow: str,
        input: dict[str, Any],
        run_id: str | None,
        timeout: float | timedelta | None,
        labels: dict[str, str] | None,
        wait: bool = False,
    ) -> pb.RunWorkflowRequest:
        return pb.RunWorkflowRequest(
            workflow=workflow,
            input=_struct(input),
            run_id=run_id or "",
            wait=wait,
            timeout=_duration(timeout),
            labels=labels or {},
        )

    async def run(
        self,
        workflow: str,
        /,
        *,
        run_id: str | None = None,
        timeout: float | timedelta | None = None,
        labels: dict[str, str] | None = None,
        input: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Any:
        """Run a workflow to its end and return its result (raises :class:`RunError`).

        The input is ``input`` and/or the keyword arguments; use ``input`` for field names
        that are also options here (``run_id``, ``timeout``, ``labels``).

        The run gets a client-chosen id, so a dropped connection is retried without
        starting a second run.
        """
        req = self._request(
            workflow, {**(input or {}), **fields}, run_id or new_run_id(), timeout, labels, True
        )
        for attempt in range(self.reconnect_attempts + 1):
            try:
                resp = await self._stub.RunWorkflow(req, metadata=self._metadata)
                return result_of(run_from_pb(resp.run))
            except grpc.aio.AioRpcError as e:
                if e.code() not in _RETRYABLE or attempt == self.reconnect_attempts:
                    raise from_rpc_error(e) from e
                await asyncio.sleep(self._backoff(attempt + 1, e))
        raise AssertionError("unreachable")

    async def start(
        self,
        workflow: str,
        /,
        *,
        run_id: str | None = None,
        timeout: float | timedelta | None = None,
        labels: dict[str, str] | None = None,
        input: dict[str, Any] | None = None,
        **fields: Any,
    ) -> RunHandle:
        """Start a run and return its handle at once (input as for :meth:`run`)."""
        req = self._request(workflow, {**(input or {}), **fields}, run_id, timeout, labels)
        with mapped_errors():
            resp = await self._stub.RunWorkflow(req, metadata=self._metadata)
        return RunHandle(self, resp.run.run_id)

    def stream(
        self,
        workflow: str,
        /,
        *,
        run_id: str | None = None,
        timeout: float | timedelta | None = None,
        labels: dict[str, str] | None = None,
        input: dict[str, Any] | None = None,
        **fields: Any,
    ) -> RunHandle:
        """A handle whose first ``events()`` call starts the run and streams it in the same
        call (one round trip, no event can be missed). Input as for :meth:`run`."""
        req = self._request(
            workflow, {**(input or {}), **fields}, run_id or new_run_id(), timeout, labels
        )
        return RunHandle(self, req.run_id, start=req)

    def handle(self, run_id: str) -> RunHandle:
        """A handle on an existing run."""
        return RunHandle(self, run_id)

    async def get_run(self, run_id: str) -> Run:
        with mapped_errors():
            resp = await self._stub.GetRun(pb.GetRunRequest(run_id=run_id), metadata=self._metadata)
        return run_from_pb(resp.run)

    async def cancel(self, run_id: str) -> Run:
        with mapped_errors():
            resp = await self._stub.CancelRun(
                pb.CancelRunRequest(run_id=run_id), metadata=self._metadata
            )
        return run_from_pb(resp.run)

    async def send_event(self, run_id: str, type: str, /, **data: Any) -> Run:
        with mapped_errors():
            resp = await self._stub.SendEvent(
                pb.SendEventRequest(run_id=run_id, type=type, data=_struct(data)),
                metadata=self._metadata,
            )
        return run_from_pb(resp.run)

    async def list_workflows(self) -> list[WorkflowInfo]:
        with mapped_errors():
            resp = await self._stub.ListWorkflows(
                pb.ListWorkflowsRequest(), metadata=self._metadata
            )
        return [workflow_from_pb(w) for w in resp.workflows]

    async def list_runs(
        self,
        *,
        workflow: str = "",
        statuses: Iterable[str] = (),
        labels: dict[str, str] | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Run]:
        """Every matching run, newest first, fetched page by page."""
        token = ""
        status_values = [pb.RunStatus.Value(f"RUN_STATUS_{s.upper()}") for s in statuses]
        while True:
            with mapped_errors():
                resp = await self._stub.ListRuns(
                    pb.ListRunsRequest(
                        workflow=workflow,
                        statuses=status_values,
                        labels=labels or {},
                        page_size=page_size,
                        page_token=token,
                    ),
                    metadata=self._metadata,
                )
            for run in resp.runs:
                yield run_from_pb(run)
            token = resp.next_page_token
            if not token:
                return

    async def _events(
        self,
        run_id: str,
        after: int,
        kinds: Iterable[str] | None,
        start: pb.RunWorkflowRequest | None,
    ) -> AsyncIterator[Event]:
        kind_values = [pb.EventKind.Value(f"EVENT_KIND_{k.upper()}") for k in kinds or ()]
        failures = 0
        while True:
            if start is not None:
                req = pb.StreamEventsRequest(start=start, after_sequence=after, kinds=kind_values)
            else:
                req = pb.StreamEventsRequest(run_id=run_id, after_sequence=after, kinds=kind_values)
            call = self._stub.StreamEvents(req, metadata=self._metadata)
            try:
                async for msg in call:
                    start = None  # the run exists now; reconnect by id
                    failures = 0
                    event = event_from_pb(msg)
                    after = event.sequence
                    yield event
                    if event.terminal:
                        return
                # Closed without a terminal event: either the run had ended at or before
                # `after`, so nothing was left to send, or the server went away between events.
                if await self._ended_by(run_id, after):
                    return
                raise _StreamInterruptedError
            except (grpc.aio.AioRpcError, _StreamInterruptedError) as e:
                if isinstance(e, grpc.aio.AioRpcError) and e.code() not in _RETRYABLE:
                    raise from_rpc_error(e) from e
                failures += 1
                if failures > self.reconnect_attempts:
                    if isinstance(e, grpc.aio.AioRpcError):
                        raise from_rpc_error(e) from e
                    raise UnavailableError(
                        grpc.StatusCode.UNAVAILABLE,
                        "the event stream kept closing before the run's terminal event",
                    ) from e
                await asyncio.sleep(
                    self._backoff(failures, e if isinstance(e, grpc.aio.AioRpcError) else None)
                )
            finally:
                # The caller stopped early (break, aclose): end the call rather than leave the
                # server streaming into it. A no-op once the call is done.
                call.cancel()

    def _backoff(self, attempt: int, error: grpc.aio.AioRpcError | None) -> float:
        """Seconds to wait before retry ``attempt`` (1, 2, ...): growing with each attempt,
        and never shorter than the server's RetryInfo asks (a restarting server says how
        long it needs), up to _MAX_RETRY_AFTER."""
        delay = self.reconnect_delay * attempt
        asked = from_rpc_error(error).retry_after if error is not None else None
        if asked is not None:
            delay = max(delay, min(asked, _MAX_RETRY_AFTER))
        return delay

    async def _ended_by(self, run_id: str, sequence: int) -> bool:
        """Whether the run has ended with its last event at or before ``sequence``."""
        try:
            resp = await self._stub.GetRun(pb.GetRunRequest(run_id=run_id), metadata=self._metadata)
        except grpc.aio.AioRpcError:
            return False  # cannot tell; the caller retries the stream
        run = run_from_pb(resp.run)
        return run.ended and run.last_sequence <= sequence


class _StreamInterruptedError(Exception):
    """The stream closed before the run's terminal event."""


class RunHandle:
    """One run: its events, its result, and control."""

    def __init__(
        self, client: WorkflowClient, run_id: str, start: pb.RunWorkflowRequest | None = None
    ) -> None:
        self.client = client
        self.run_id = run_id
        self._start = start

    def events(self, after: int = 0, kinds: Iterable[str] | None = None) -> AsyncIterator[Event]:
        """The run's events after sequence ``after``, live until its terminal event. When the
        connection drops, it reconnects and resumes after the last event it yielded, so no
        event is missed or repeated."""
        start, self._start = self._start, None
        return self.client._events(self.run_id, after, kinds, start)

    async def result(self) -> Any:
        """Wait for the run to end; return its result or raise its :class:`RunError`."""
        async for _ in self.events(kinds=["RUN_SUCCEEDED"]):
            pass  # only the terminal event comes through this filter
        return result_of(await self.get())

    async def get(self) -> Run:
        return await self.client.get_run(self.run_id)

    async def cancel(self) -> Run:
        return await self.client.cancel(self.run_id)

    async def send_event(self, type: str, /, **data: Any) -> Run:
        return await self.client.send_event(self.run_id, type, **data)
