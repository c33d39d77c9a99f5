"""What each ``wf`` command does (argument parsing and exit codes are in :mod:`.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from . import _cli_output as out
from ._auth import open_channel
from ._cli_credentials import Credentials
from ._client import CHANNEL_OPTIONS, RunHandle, WorkflowClient, _duration, _struct, result_of
from ._errors import mapped_errors
from ._ids import new_run_id
from ._pb import workflow_pb2 as pb
from ._types import Event, Run, run_from_pb

if TYPE_CHECKING:
    pass

CONNECT_TIMEOUT = 10.0  # seconds to establish the connection before giving up (exit 3)


class CliError(Exception):
    """Ends ``wf`` with one line on stderr and ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class WaitInterruptedError(Exception):
    """Ctrl-C while waiting on a run; the message says the run goes on."""


def parse_object(text: str, option: str) -> dict[str, Any]:
    """A JSON object given on the command line: ``'{...}'``, ``@file`` or ``@-`` (stdin)."""
    if text.startswith("@"):
        name = text[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as e:
            raise CliError(f"{option}: cannot read {name}: {e.strerror or e}", 2) from e
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{option} is not valid JSON: {e}", 2) from e
    if not isinstance(value, dict):
        raise CliError(f'{option} must be a JSON object, like \'{{"key": "value"}}\'', 2)
    return value


@contextlib.asynccontextmanager
async def connect(
    address: str, credentials: Credentials | None = None
) -> AsyncIterator[WorkflowClient]:
    """A client whose connection is up, or :class:`CliError` (exit 3) at once when the
    server cannot be reached, rather than after the client's reconnect attempts."""
    credentials = credentials or Credentials(None, None)
    channel = open_channel(address, credentials.channel, CHANNEL_OPTIONS)
    # A failed TLS handshake looks like an unreachable server; say what to check.
    hint = (
        " over TLS (check --tls-ca, and --tls-cert/--tls-key if it requires client certificates)"
        if credentials.channel is not None
        else ""
    )
    try:
        state = channel.get_state(try_to_connect=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_TIMEOUT
        while state != grpc.ChannelConnectivity.READY:
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                raise CliError(f"cannot reach the server at {address}{hint}", 3)
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), deadline - loop.time())
            except TimeoutError:
                raise CliError(
                    f"cannot reach the server at {address}: "
                    f"no connection within {CONNECT_TIMEOUT:g}s{hint}",
                    3,
                ) from None
            state = channel.get_state()
        yield WorkflowClient(address, channel=channel, token=credentials.token)
    finally:
        await channel.close()


Command = Callable[[WorkflowClient, argparse.Namespace], Awaitable[int]]


def emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(out.dumps(doc) if args.json else text, flush=True)


# ---- commands ------------------------------------------------------------------------------


async def cmd_workflows(client: WorkflowClient, args: argparse.Namespace) -> int:
    found = await client.list_workflows()
    emit(args, [out.workflow_doc(w) for w in found], out.workflows_text(found))
    return 0


async def cmd_run(client: WorkflowClient, args: argparse.Namespace) -> int:
    run_id = args.run_id or new_run_id()
    req = pb.RunWorkflowRequest(
        workflow=args.workflow,
        input=_struct(args.input),
        run_id=run_id,
        timeout=_duration(args.timeout),
        labels=args.labels,
    )
    if args.detach:
        stub = client.stub
        with mapped_errors():
            resp = await stub.RunWorkflow(req)
        emit(args, out.run_doc(run_from_pb(resp.run)), resp.run.run_id)
        return 0
    handle = RunHandle(client, run_id, start=req)
    if args.follow:
        return await _follow(client, handle.events(), args, run_id, header=True)
    # Without --follow a terminal shows only the status line, so the whole stream is read;
    # otherwise only the terminal event is asked for.
    live = not args.json and sys.stdout.isatty()
    kinds = None if live else ["RUN_SUCCEEDED"]  # the terminal event always comes
    display = out.Display(sys.stdout, json_lines=False, live=live, show_events=False, header=False)
    try:
        async with display:
            async for ev in handle.events(kinds=kinds):
                display.event(ev)
    except asyncio.CancelledError:
        raise WaitInterruptedError(_goes_on(run_id)) from None
    run = await client.get_run(run_id)
    if args.json:
        print(out.dumps(out.run_doc(run)), flush=True)
    elif run.status == "SUCCEEDED":
        print(out.result_text(run.result), flush=True)
    result_of(run)  # raises RunError for a run that did not succeed: exit 1
    return 0


async def cmd_events(client: WorkflowClient, args: argparse.Namespace) -> int:
    events = client.handle(args.run_id).events(after=args.after, kinds=args.kinds or None)
    return await _follow(client, events, args, args.run_id, header=False)


async def _follow(
    client: WorkflowClient,
    events: AsyncIterator[Event],
    args: argparse.Namespace,
    run_id: str,
    *,
    header: bool,
) -> int:
    """Print events until the terminal one; the exit code says how the run ended."""
    live = not args.json and sys.stdout.isatty()
    display = out.Display(
        sys.stdout, json_lines=args.json, live=live, show_events=True, header=header
    )
    last: Event | None = None
    try:
        async with display:
            async for ev in events:
                display.event(ev)
                last = ev
    except asyncio.CancelledError:
        raise WaitInterruptedError(_goes_on(run_id)) from None
    if last is None or not last.terminal:
        # Nothing came after --after: the run had ended by then; its status says how.
        result_of(await client.get_run(run_id))
        return 0
    message = out.ending_message(last)
    if message is not None:
        raise CliError(message, 1)
    if header and not args.json:  # wf run --follow ends with the result, like wf run
        print(out.result_text(last.data.get("result")), flush=True)
    return 0


def _goes_on(run_id: str) -> str:
    return f"interrupted; run {run_id} goes on (stop it with: wf cancel {run_id})"


async def cmd_get(client: WorkflowClient, args: argparse.Namespace) -> int:
    run = await client.get_run(args.run_id)
    emit(args, out.run_doc(run), out.run_text(run))
    return 0


async def cmd_runs(client: WorkflowClient, args: argparse.Namespace) -> int:
    page_size = min(args.limit, 1000) if args.limit else 1000
    found: list[Run] = []
    listing = client.list_runs(
        workflow=args.workflow or "",
        statuses=args.statuses or (),
        labels=args.labels,
        page_size=page_size,
    )
    async for run in listing:  # unary calls page by page: nothing left open on break
        found.append(run)
        if args.limit and len(found) >= args.limit:
            break
    emit(args, [out.run_doc(r) for r in found], out.runs_table(found))
    return 0


async def cmd_cancel(client: WorkflowClient, args: argparse.Namespace) -> int:
    run = await client.cancel(args.run_id)
    emit(args, out.run_doc(run), f"run {run.run_id} ({run.workflow}) {run.status}")
    return 0


async def cmd_send(client: WorkflowClient, args: argparse.Namespace) -> int:
    run = await client.send_event(args.run_id, args.type, **args.data)
    text = f"sent {args.type} to run {run.run_id} ({run.workflow}), now {run.status}"
    emit(args, out.run_doc(run), text)
    return 0
