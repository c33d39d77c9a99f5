"""Exit codes, one-line errors on stderr, the help text, and the installed entry point."""

from __future__ import annotations

import subprocess
import sysconfig
import time
from pathlib import Path

from .conftest import Wf, closed_port, start_server, stop_server, wait_for_status


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wf: "), err
    return lines[0]


def test_failed_run_exits_1(wf: Wf) -> None:
    human, as_json = wf.many(
        ["run", "flaky", "--input", '{"failures": 6}'],
        ["run", "flaky", "--input", '{"failures": 6}', "--json"],
    )
    assert (human.code, human.out) == (1, "")
    line = one_error_line(human.err)
    assert "ended FAILED" in line and "FlakyError: transient failure" in line

    # --json still prints the run, for a script to inspect.
    assert as_json.code == 1
    doc = as_json.json()
    assert doc["status"] == "FAILED"
    assert doc["error"]["type"] == "StepFailedError"
    assert doc["error"]["step"] == "attempt"

    # `wf events` on that run ends the same way, even when no event is left to print.
    events, nothing_left = wf.many(
        ["events", doc["run_id"], "--kind", "STREAM"], ["events", doc["run_id"], "--after", "1000"]
    )
    assert events.code == 1 and "ended FAILED" in one_error_line(events.err)
    assert (nothing_left.code, nothing_left.out) == (1, "")
    assert "ended FAILED" in one_error_line(nothing_left.err)


def test_flaky_run_within_its_retries_exits_0(wf: Wf) -> None:
    assert wf.ok("run", "flaky", "--input", '{"failures": 2}').json() == {"attempts": 3}


def test_timed_out_and_cancelled_runs_exit_1(wf: Wf) -> None:
    r = wf("run", "approval", "--input", '{"question": "q"}', "--timeout", "0.2")
    assert r.code == 1
    assert "ended TIMED_OUT" in one_error_line(r.err)

    run_id = wf.ok("run", "approval", "--input", '{"question": "q"}', "--detach").out.strip()
    waiting = wf.popen("events", run_id)
    wait_for_status(wf, run_id, "WAITING_FOR_INPUT")
    wf.ok("cancel", run_id)
    out, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 1
    assert "ended CANCELLED" in one_error_line(err)
    assert out.splitlines()[-1].split()[2] == "RUN_CANCELLED"


def test_bad_input_exits_2(wf: Wf) -> None:
    bad_json, not_object, bad_data, no_file, invalid, missing = wf.many(
        ["run", "echo", "--input", "{not json"],
        ["run", "echo", "--input", "[1, 2]"],
        ["send", "some-run", "HumanResponseEvent", "--data", "nope"],
        ["run", "echo", "--input", "@/nonexistent/input.json"],
        ["run", "flaky", "--input", '{"failures": 11}'],  # fails the schema: INVALID_ARGUMENT
        ["run", "echo", "--follow"],  # a required field missing
    )
    assert (bad_json.code, bad_json.out) == (2, "")
    assert one_error_line(bad_json.err).startswith("wf: --input is not valid JSON")
    assert not_object.code == 2 and "must be a JSON object" in one_error_line(not_object.err)
    assert bad_data.code == 2 and "--data is not valid JSON" in one_error_line(bad_data.err)
    assert no_file.code == 2 and "cannot read" in one_error_line(no_file.err)
    assert invalid.code == 2
    assert one_error_line(invalid.err).startswith("wf: invalid argument: ")
    assert "failures" in invalid.err
    assert missing.code == 2 and "message" in one_error_line(missing.err)


def test_bad_fields_are_listed_one_per_line(wf: Wf) -> None:
    several, one = wf.many(
        ["run", "ticker", "--input", '{"count": -1, "interval_ms": "soon"}'],
        ["run", "echo", "--input", "{}"],
    )
    assert (several.code, several.out) == (2, "")
    head, *fields = several.err.splitlines()
    assert head == "wf: invalid argument: 2 fields to fix"
    assert sorted(line.split(":")[0] for line in fields) == ["  input.count", "  input.interval_ms"]
    assert one.code == 2
    assert one_error_line(one.err).startswith("wf: invalid argument: input.message: ")


def test_unknown_names_exit_2(wf: Wf) -> None:
    r, *others = wf.many(
        ["run", "no-such-workflow"],
        ["get", "nope"],
        ["cancel", "nope"],
        ["events", "nope"],
        ["send", "nope", "X"],
    )
    assert r.code == 2
    assert one_error_line(r.err).startswith("wf: not found: no workflow named 'no-such-workflow'")
    for r in others:
        assert r.code == 2, r
        assert "not found" in one_error_line(r.err)


def test_reused_run_id_and_ended_runs_exit_2(wf: Wf) -> None:
    run_id = wf.ok("run", "echo", "--input", '{"message": "one"}', "--detach").out.strip()
    r = wf("run", "echo", "--input", '{"message": "two"}', "--run-id", run_id)
    assert r.code == 2 and one_error_line(r.err).startswith("wf: already exists: ")

    wait_for_status(wf, run_id, "SUCCEEDED")
    r = wf("cancel", run_id)
    assert r.code == 2 and one_error_line(r.err).startswith("wf: failed precondition: ")
    r = wf("send", run_id, "HumanResponseEvent", "--data", '{"response": "yes"}')
    assert r.code == 2 and one_error_line(r.err).startswith("wf: failed precondition: ")


def test_bad_usage_exits_2(wf: Wf) -> None:
    commands: tuple[list[str], ...] = (
        [],
        ["frobnicate"],
        ["run"],
        ["run", "echo", "--label", "no-equals-sign"],
        ["run", "echo", "--timeout", "soon"],
        ["run", "echo", "--timeout", "-1"],
        ["events", "x", "--after", "-1"],
        ["events", "x", "--kind", "BOGUS"],
        ["runs", "--status", "DONE"],
        ["runs", "--limit", "many"],
    )
    for args, r in zip(commands, wf.many(*commands), strict=True):
        assert r.code == 2, (args, r)
        assert r.out == ""
        assert r.err.splitlines()[-1].startswith("wf"), r.err


def test_unreachable_server_exits_3(wf: Wf) -> None:
    address = f"127.0.0.1:{closed_port()}"
    began = time.monotonic()
    results = wf.many(  # --address wins over WORKFLOW_ADDRESS
        ["--address", address, "workflows"],
        ["--address", address, "run", "echo", "--input", '{"message": "a"}'],
        ["get", "x", "--address", address],
    )
    results += Wf(address).many(["run", "ticker", "--follow"], ["events", "x"])  # environment
    assert time.monotonic() - began < 2.5  # at once, not after the client's retries
    for r in results:
        assert r.code == 3, r
        assert one_error_line(r.err) == f"wf: cannot reach the server at {address}"


def test_other_server_errors_exit_4(tmp_path: Path) -> None:
    """RESOURCE_EXHAUSTED (over --max-concurrent-runs) is none of the above: 4."""
    server = start_server(tmp_path / "server.log", "--max-concurrent-runs", "1")
    try:
        wf = Wf(server.address)
        wf.ok("run", "approval", "--input", '{"question": "q"}', "--detach")
        r = wf("run", "echo", "--input", '{"message": "a"}')
        assert r.code == 4
        assert one_error_line(r.err).startswith("wf: resource exhausted: ")
    finally:
        stop_server(server)


def test_help_documents_the_exit_codes(wf: Wf) -> None:
    r = wf.ok("--help")
    assert "exit status:" in r.out
    epilog = r.out[r.out.index("exit status:") :]
    for code, what in [
        ("0", "success"),
        ("1", "the run ended FAILED, CANCELLED or TIMED_OUT"),
        ("2", "bad usage or input"),
        ("3", "the server cannot be reached"),
        ("4", "any other server error"),
        ("5", "the server refused the credentials"),
        ("130", "interrupted"),
    ]:
        assert f"\n  {code.ljust(4)} {what}" in epilog, code
    for name in ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION"):
        assert name in epilog
    assert "UNAVAILABLE or DEADLINE_EXCEEDED" in epilog
    assert "WORKFLOW_ADDRESS" in r.out
    assert "WF_TOKEN" in r.out
    commands = ("workflows", "run", "events", "get", "runs", "cancel", "send")
    for command, r in zip(commands, wf.many(*([c, "--help"] for c in commands)), strict=True):
        assert r.code == 0
        assert r.out.startswith(f"usage: wf {command}")


def test_installed_entry_point(wf: Wf) -> None:
    """`pip install -e clients/python` puts `wf` in the environment's scripts directory."""
    script = Path(sysconfig.get_path("scripts")) / "wf"
    assert script.is_file(), f"{script} missing: run .venv/bin/pip install -e clients/python"
    p = subprocess.run(
        [str(script), "run", "echo", "--input", '{"message": "installed"}'],
        capture_output=True,
        text=True,
        env=wf.env(),
        timeout=20,
    )
    assert (p.returncode, p.stdout, p.stderr) == (0, "installed\n", "")
