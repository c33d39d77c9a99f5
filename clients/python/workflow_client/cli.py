"""``wf``: the workflow service from the command line.

``wf workflows``, ``wf run echo --input '{"message": "hi"}'``, ``wf run ticker --follow``,
``wf events RUN_ID``, ``wf get RUN_ID``, ``wf runs``, ``wf cancel RUN_ID``,
``wf send RUN_ID TYPE --data '{...}'``. ``wf --help`` lists the exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import sys
from collections.abc import Sequence

import grpc

from . import _cli_commands as commands
from . import _cli_credentials as credentials
from ._client import DEFAULT_ADDRESS
from ._errors import RunError, WorkflowServiceError
from ._pb import workflow_pb2 as pb

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_SERVER_ERROR = 4
EXIT_DENIED = 5
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

_USAGE_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_DENIED_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})

EPILOG = f"""\
exit status:
  0    success
  1    the run ended FAILED, CANCELLED or TIMED_OUT (wf run, wf events)
  2    bad usage or input: invalid arguments or JSON, or the server answered
       INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS or FAILED_PRECONDITION
  3    the server cannot be reached, or answered UNAVAILABLE or DEADLINE_EXCEEDED
  4    any other server error
  5    the server refused the credentials: UNAUTHENTICATED or PERMISSION_DENIED
  130  interrupted (Ctrl-C); a run being waited for goes on

environment:
  WORKFLOW_ADDRESS  server address when --address is not given (default {DEFAULT_ADDRESS})
{credentials.ENVIRONMENT_HELP}

JSON arguments (--input, --data) also accept @FILE, or @- for standard input.
"""

STATUSES = [n.removeprefix("RUN_STATUS_") for n, number in pb.RunStatus.items() if number]
KINDS = [n.removeprefix("EVENT_KIND_") for n, number in pb.EventKind.items() if number]


# ---- argument types ------------------------------------------------------------------------


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


# ---- the parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # --address and --json are accepted before or after the command: the command's copies
    # default to SUPPRESS so they only override the top-level ones when given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON output"
    )
    credentials.add_options(common, hidden=True)

    parser = argparse.ArgumentParser(
        prog="wf",
        description="Run and watch workflows on a workflow service.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("WORKFLOW_ADDRESS") or DEFAULT_ADDRESS,
        help=f"server host:port (default: $WORKFLOW_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: one JSON document per result, JSON lines for events",
    )
    credentials.add_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: commands.Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    command("workflows", commands.cmd_workflows, "list the workflows: description, input fields")

    p = command("run", commands.cmd_run, "run a workflow and print its result")
    p.add_argument("workflow", metavar="WORKFLOW")
    p.add_argument("--input", default="{}", metavar="JSON", help="the input, a JSON object")
    p.add_argument(
        "-f", "--follow", action="store_true", help="print the run's events live as it goes"
    )
    p.add_argument(
        "--detach", action="store_true", help="start the run, print its id and do not wait"
    )
    p.add_argument("--run-id", help="the run's id (idempotent: the same request finds the run)")
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="longest the run may take; then it ends TIMED_OUT",
    )
    _labels_option(p, "label the run (repeatable)")

    p = command("events", commands.cmd_events, "print a run's events, following it to its end")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument(
        "--after", type=_count, default=0, metavar="N", help="only events after sequence N"
    )
    p.add_argument(
        "--kind",
        dest="kinds",
        type=str.upper,
        choices=KINDS,
        action="extend",
        nargs="+",
        metavar="KIND",
        help=f"only these kinds (the terminal event always comes): {', '.join(KINDS)}",
    )

    p = command("get", commands.cmd_get, "show one run")
    p.add_argument("run_id", metavar="RUN_ID")

    p = command("runs", commands.cmd_runs, "list runs, newest first")
    p.add_argument("--workflow", metavar="W", help="only runs of this workflow")
    p.add_argument(
        "--status",
        dest="statuses",
        type=str.upper,
        choices=STATUSES,
        action="extend",
        nargs="+",
        metavar="S",
        help=f"only runs in one of these statuses: {', '.join(STATUSES)}",
    )
    _labels_option(p, "only runs with this label (repeatable)")
    p.add_argument(
        "--limit", type=_count, default=20, metavar="N", help="at most N runs (0: all; 20)"
    )

    p = command("cancel", commands.cmd_cancel, "cancel a run that has not ended")
    p.add_argument("run_id", metavar="RUN_ID")

    p = command("send", commands.cmd_send, "send an event into a run (e.g. a person's answer)")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("type", metavar="TYPE", help="the event's type (see wf workflows)")
    p.add_argument("--data", default="{}", metavar="JSON", help="its fields, a JSON object")
    return parser


def _labels_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument(
        "--label", dest="labels", type=_label, action="append", metavar="KEY=VALUE", help=help
    )


# ---- running -------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"wf: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _service_error(e: WorkflowServiceError) -> None:
    """One ``wf:`` line; when several request fields are bad, one indented line for each."""
    what = e.code.name.lower().replace("_", " ")
    violations = e.field_violations
    retry = f" (retry in {e.retry_after:g}s)" if e.retry_after is not None else ""
    if len(violations) == 1:
        _error(f"{what}: {violations[0].field}: {violations[0].description}{retry}")
    elif violations:
        _error(f"{what}: {len(violations)} fields to fix{retry}")
        for v in violations:
            print(f"  {v.field}: {' '.join(v.description.split())}", file=sys.stderr, flush=True)
    else:
        hint = ""
        if e.code == grpc.StatusCode.UNAUTHENTICATED:
            hint = " (wf sends the token in --token-file PATH or $WF_TOKEN)"
        _error(f"{what}: {e.details}{retry}{hint}")


def _exit_code(e: WorkflowServiceError) -> int:
    if e.code in _USAGE_CODES:
        return EXIT_USAGE
    if e.code in _UNREACHABLE_CODES:
        return EXIT_UNREACHABLE
    if e.code in _DENIED_CODES:
        return EXIT_DENIED
    return EXIT_SERVER_ERROR


async def _run(args: argparse.Namespace) -> int:
    async with commands.connect(args.address, credentials.from_args(args)) as client:
        code: int = await args.func(client, args)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        _error("a command is required (wf --help lists them)")
        return EXIT_USAGE
    args.labels = dict(getattr(args, "labels", None) or [])
    for stream in (sys.stdout, sys.stderr):  # data a terminal cannot show must not crash wf
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        for option in ("input", "data"):
            if hasattr(args, option):
                setattr(args, option, commands.parse_object(getattr(args, option), f"--{option}"))
        return asyncio.run(_run(args))
    except commands.CliError as e:
        _error(str(e))
        return e.exit_code
    except credentials.CredentialsError as e:
        _error(str(e))
        return EXIT_USAGE
    except RunError as e:
        _error(str(e))
        return EXIT_RUN_FAILED
    except WorkflowServiceError as e:
        _service_error(e)
        return _exit_code(e)
    except commands.WaitInterruptedError as e:
        _error(str(e))
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `wf events ID | head`): exit quietly, and keep Python
        # from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
