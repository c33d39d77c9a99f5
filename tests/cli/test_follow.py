"""``wf run --follow``: events live and in order, a status line on a terminal, and Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from .conftest import WF, Wf, wait_for_status


def test_follow_prints_events_in_order_then_the_result(wf: Wf) -> None:
    r = wf.ok("run", "ticker", "--input", '{"count": 3, "interval_ms": 20}', "--follow")
    lines = r.out.splitlines()
    assert lines[0].startswith("run ") and len(lines[0].split()[1]) == 32
    events, result = lines[1:-1], lines[-1]
    sequences = [int(line.split()[1]) for line in events]
    assert sequences == list(range(1, len(events) + 1))
    kinds = [line.split()[2] for line in events]
    assert kinds[0] == "RUN_STARTED" and kinds[-1] == "RUN_SUCCEEDED"
    assert kinds.count("STREAM") == 3
    progress = [line for line in events if line.split()[2] == "STREAM"]
    assert [p.split()[3:5] for p in progress] == [["tick", "Progress"]] * 3
    assert [json.loads(p.split()[5])["n"] for p in progress] == [1, 2, 3]
    assert result == "3"
    assert "\x1b" not in r.out and "\r" not in r.out  # no status line when not a terminal


def test_follow_json_lines(wf: Wf) -> None:
    r = wf.ok(
        "run",
        "ticker",
        "--input",
        '{"count": 2, "interval_ms": 0}',
        "--follow",
        "--json",
        "--label",
        "via=follow",
    )
    events = r.json_lines()
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1] == {**events[-1], "kind": "RUN_SUCCEEDED", "data": {"result": 2}}
    run_id = events[0]["run_id"]
    assert wf.ok("get", run_id, "--json").json()["labels"] == {"via": "follow"}


def test_follow_a_failing_run(wf: Wf) -> None:
    r = wf("run", "flaky", "--input", '{"failures": 6}', "--follow")
    assert r.code == 1
    kinds = [line.split()[2] for line in r.out.splitlines()[1:]]
    assert kinds.count("STEP_STARTED") == 5 and kinds[-1] == "RUN_FAILED"
    assert r.err.startswith("wf: run ") and "ended FAILED: StepFailedError" in r.err
    assert len(r.err.splitlines()) == 1


def test_follow_is_live(wf: Wf) -> None:
    """Each event line arrives while the run goes, not all at the end."""
    p = wf.popen("run", "ticker", "--input", '{"count": 4, "interval_ms": 300}', "--follow")
    try:
        assert p.stdout is not None
        began = time.monotonic()
        while "STREAM" not in (line := p.stdout.readline()):
            assert line, "ended before the first progress event"
        first_progress = time.monotonic() - began
        out, _ = p.communicate(timeout=10)
        total = time.monotonic() - began
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0
    assert out.splitlines()[-1] == "4"
    assert first_progress < total - 0.5


def test_ctrl_c_exits_130_and_the_run_goes_on(wf: Wf) -> None:
    ticker = ["run", "ticker", "--input", '{"count": 100, "interval_ms": 100}']
    procs = [wf.popen(*ticker, "--follow"), wf.popen(*ticker)]
    try:
        time.sleep(1.0)
        for p in procs:
            p.send_signal(signal.SIGINT)
        errors = [p.communicate(timeout=10)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, err in zip(procs, errors, strict=True):
        assert p.returncode == 130, err
        assert "Traceback" not in err
        line = err.strip()
        assert line.startswith("wf: interrupted; run ") and "goes on" in line, err
        run_id = line.split()[3]
        wait_for_status(wf, run_id, "RUNNING")
        wf.ok("cancel", run_id)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_status_line_on_a_terminal(wf: Wf) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(
            [*WF, "run", "ticker", "--input", '{"count": 3, "interval_ms": 150}', "--follow"],
            stdout=slave,
            stderr=subprocess.PIPE,
            env={**wf.env(), "COLUMNS": "100"},
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            assert ready, "no output from wf on the terminal"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert p.wait(10) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    screen = b"".join(chunks).decode()
    assert "\r\x1b[K" in screen  # the status line is redrawn in place
    assert "RUNNING" in screen and "events" in screen
    lines = [line.rsplit("\x1b[K", 1)[-1] for line in screen.split("\r\n")]
    assert any(" RUN_SUCCEEDED " in line for line in lines)
    assert lines[-2:] == ["3", ""] or lines[-1] == "3"  # the status line is gone at the end
