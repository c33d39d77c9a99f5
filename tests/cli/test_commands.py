"""Every ``wf`` command, in its human and its --json form."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from .conftest import Wf, wait_for_status


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_workflows_lists_names_descriptions_and_input_fields(wf: Wf) -> None:
    text = wf.ok("workflows").out
    lines = text.splitlines()
    assert any(line.startswith("echo") and "Returns the message" in line for line in lines)
    assert "input  message: string, required" in text
    assert "input  failures: integer, required" not in text
    assert "failures: integer, default 2, 0..10" in text
    assert "event  HumanResponseEvent(response: string, required)" in text

    docs = wf.ok("workflows", "--json").json()
    by_name = {w["name"]: w for w in docs}
    assert set(by_name) >= {"approval", "echo", "flaky", "research", "ticker"}
    assert by_name["echo"]["input_schema"]["required"] == ["message"]
    assert by_name["flaky"]["input_schema"]["properties"]["failures"]["default"] == 2
    assert "HumanResponseEvent" in by_name["approval"]["accepted_events"]
    assert by_name["ticker"]["steps"] == ["tick"]


def test_run_prints_the_result(wf: Wf) -> None:
    assert wf.ok("run", "echo", "--input", '{"message": "hi there"}').out == "hi there\n"
    # Non-string results print as JSON; integral numbers stay integers.
    assert wf.ok("run", "ticker", "--input", '{"count": 2, "interval_ms": 0}').out == "2\n"


def test_run_json_is_the_run_with_run_id_labels_and_timeout(wf: Wf) -> None:
    run_id = unique("run")
    doc = wf.ok(
        "--json",
        "run",
        "echo",
        "--input",
        '{"message": "x"}',
        "--run-id",
        run_id,
        "--label",
        "team=cli",
        "--label",
        "k=v=w",
        "--timeout",
        "30",
    ).json()
    assert doc["run_id"] == run_id
    assert doc["status"] == "SUCCEEDED"
    assert doc["result"] == "x"
    assert doc["input"] == {"message": "x"}
    assert doc["labels"] == {"team": "cli", "k": "v=w"}
    assert doc["error"] is None
    assert doc["created_at"].endswith("Z")
    # The same run id and input finds the same run (idempotent).
    again = wf.ok("run", "echo", "--input", '{"message": "x"}', "--run-id", run_id, "--json")
    assert again.json()["run_id"] == run_id


def test_run_input_from_stdin_and_file(wf: Wf, tmp_path: Path) -> None:
    r = wf("run", "echo", "--input", "@-", stdin='{"message": "from stdin"}')
    assert (r.code, r.out) == (0, "from stdin\n")
    path = tmp_path / "input.json"
    path.write_text('{"message": "from a file"}')
    assert wf.ok("run", "echo", "--input", f"@{path}").out == "from a file\n"


def test_detach_get_and_cancel(wf: Wf) -> None:
    run_id = wf.ok("run", "approval", "--input", '{"question": "ok?"}', "--detach").out.strip()
    assert len(run_id) == 32
    run = wait_for_status(wf, run_id, "WAITING_FOR_INPUT")
    assert run["workflow"] == "approval"
    assert run["input"] == {"question": "ok?"}

    text = wf.ok("get", run_id).out
    assert f"run_id:    {run_id}" in text
    assert "status:    WAITING_FOR_INPUT" in text

    assert wf.ok("cancel", run_id).out == f"run {run_id} (approval) CANCELLED\n"
    doc = wf.ok("get", run_id, "--json").json()
    assert doc["status"] == "CANCELLED"
    assert doc["error"]["type"] == "WorkflowCancelledError"
    assert doc["ended_at"] is not None
    assert "error:     WorkflowCancelledError: the run was cancelled" in wf.ok("get", run_id).out


def test_cancel_json(wf: Wf) -> None:
    run_id = wf.ok("run", "approval", "--input", '{"question": "q"}', "--detach").out.strip()
    doc = wf.ok("cancel", run_id, "--json").json()
    assert (doc["run_id"], doc["status"]) == (run_id, "CANCELLED")


def test_send_completes_an_approval_run(wf: Wf) -> None:
    run_id = unique("approve")
    waiting = wf.popen("run", "approval", "--input", '{"question": "ship it?"}', "--run-id", run_id)
    try:
        wait_for_status(wf, run_id, "WAITING_FOR_INPUT")
        sent = wf.ok("send", run_id, "HumanResponseEvent", "--data", '{"response": "yes"}')
        assert sent.out.startswith(f"sent HumanResponseEvent to run {run_id} (approval), now ")
        out, err = waiting.communicate(timeout=10)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert (waiting.returncode, err) == (0, "")
    assert json.loads(out) == {"approved": True, "response": "yes"}
    assert wf.ok("get", run_id, "--json").json()["result"] == {
        "approved": True,
        "response": "yes",
    }


def test_send_json(wf: Wf) -> None:
    run_id = wf.ok("run", "approval", "--input", '{"question": "q"}', "--detach").out.strip()
    wait_for_status(wf, run_id, "WAITING_FOR_INPUT")
    doc = wf.ok("send", run_id, "HumanResponseEvent", "--data", '{"response": "no"}', "--json")
    assert doc.json()["run_id"] == run_id
    assert wait_for_status(wf, run_id, "SUCCEEDED")["result"] == {
        "approved": False,
        "response": "no",
    }


def test_events_replays_a_run_to_its_end(wf: Wf) -> None:
    run_id = unique("ticks")
    wf.ok("run", "ticker", "--input", '{"count": 3, "interval_ms": 0}', "--run-id", run_id)

    events = wf.ok("events", run_id, "--json").json_lines()
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["kind"] == "RUN_STARTED"
    assert events[0]["data"] == {"count": 3, "interval_ms": 0}
    assert events[-1]["kind"] == "RUN_SUCCEEDED"
    assert events[-1]["data"] == {"result": 3}
    assert all(e["run_id"] == run_id for e in events)

    lines = wf.ok("events", run_id).out.splitlines()
    assert len(lines) == len(events)
    assert lines[0].split()[1:4] == ["1", "RUN_STARTED", "-"]
    assert lines[-1].split()[1:5] == [str(len(events)), "RUN_SUCCEEDED", "-", "StopEvent"]
    assert lines[-1].endswith('{"result":3}')

    after = wf.ok("events", run_id, "--after", "5", "--json").json_lines()
    assert [e["sequence"] for e in after] == list(range(6, len(events) + 1))

    streamed = wf.ok("events", run_id, "--kind", "stream", "--json").json_lines()
    assert [e["kind"] for e in streamed] == ["STREAM"] * 3 + ["RUN_SUCCEEDED"]
    assert [e["data"] for e in streamed[:3]] == [{"n": n, "count": 3} for n in (1, 2, 3)]

    several = wf.ok("events", run_id, "--kind", "RUN_STARTED", "--kind", "STREAM", "--json")
    assert [e["kind"] for e in several.json_lines()][:2] == ["RUN_STARTED", "STREAM"]


def test_events_follows_a_live_run(wf: Wf) -> None:
    run_id = wf.ok(
        "run", "ticker", "--input", '{"count": 5, "interval_ms": 100}', "--detach"
    ).out.strip()
    r = wf.ok("events", run_id, "--kind", "STREAM", "--json")
    assert [e["data"]["n"] for e in r.json_lines()[:-1]] == [1, 2, 3, 4, 5]
    assert r.json_lines()[-1]["kind"] == "RUN_SUCCEEDED"


def test_runs_filters_and_limits(wf: Wf) -> None:
    label = unique("batch")
    for message in ("a", "b", "c"):  # one after the other: the listing is newest first
        wf.ok("run", "echo", "--input", json.dumps({"message": message}), "--label", f"b={label}")
    wf("run", "flaky", "--input", '{"failures": 6}', "--label", f"b={label}")

    by_label = ["runs", "--label", f"b={label}"]
    none = ["runs", "--label", f"b={unique('none')}"]
    runs, echo, failed, either, limited, table, empty, empty_json = wf.many(
        [*by_label, "--json"],
        [*by_label, "--workflow", "echo", "--json"],
        [*by_label, "--status", "failed", "--json"],
        [*by_label, "--status", "FAILED", "SUCCEEDED", "--json"],
        [*by_label, "--limit", "2", "--json"],
        by_label,
        none,
        [*none, "--json"],
    )
    docs = runs.json()
    assert len(docs) == 4
    assert [r["input"] for r in docs[1:]] == [{"message": m} for m in "cba"]
    assert {r["workflow"] for r in echo.json()} == {"echo"} and len(echo.json()) == 3
    assert [r["workflow"] for r in failed.json()] == ["flaky"]
    assert len(either.json()) == 4
    assert [r["run_id"] for r in limited.json()] == [r["run_id"] for r in docs[:2]]

    lines = table.out.splitlines()
    assert lines[0].split() == ["RUN_ID", "WORKFLOW", "STATUS", "CREATED", "DURATION", "LABELS"]
    assert len(lines) == 5
    assert lines[1].split()[:3] == [docs[0]["run_id"], "flaky", "FAILED"]
    assert lines[1].endswith(f"b={label}")

    assert (empty.code, empty.out) == (0, "(no runs)\n")
    assert (empty_json.code, empty_json.json()) == (0, [])


def test_address_option_and_environment(wf: Wf) -> None:
    r = wf.ok("--address", wf.address, "run", "echo", "--input", '{"message": "a"}')
    assert r.out == "a\n"
    assert wf.ok("workflows", "--address", wf.address, "--json").json()
