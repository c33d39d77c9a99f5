"""``wf`` as its users run it: a subprocess, against a real server started as a subprocess."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from workflow_client import NotFoundError, SyncWorkflowClient
from workflow_client._cli_output import run_doc

LISTENING = re.compile(r"event=listening address=\S+:(\d+)")  # reachable on 127.0.0.1


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_server(log: Path, *options: str) -> Server:
    """``python -m service --port 0 --store memory``; the port comes from its log line."""
    with log.open("wb") as sink:  # a file, so a chatty server never blocks on a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", "0", "--store", "memory", *options],
            stderr=sink,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "WORKFLOW_LOG_LEVEL": "INFO"},
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if m := LISTENING.search(log.read_text(errors="replace")):
            return Server(proc, int(m.group(1)))
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"the server did not start:\n{log.read_text(errors='replace')}")


def stop_server(server: Server) -> None:
    server.proc.kill()
    server.proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole session, with the example workflows."""
    s = start_server(tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield s
    finally:
        stop_server(s)


WF = [sys.executable, "-m", "workflow_client.cli"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


@dataclass
class Wf:
    """Runs ``wf`` with WORKFLOW_ADDRESS pointing at the test server."""

    address: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "WORKFLOW_ADDRESS": self.address}

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 20) -> Result:
        p = subprocess.run(
            [*WF, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )
        assert "Traceback" not in p.stderr, p.stderr
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, *args: str) -> Result:
        r = self(*args)
        assert r.code == 0, r
        assert r.err == "", r
        return r

    def many(self, *commands: list[str]) -> list[Result]:
        """Run several ``wf`` commands at once (each process start costs a few 100 ms)."""
        procs = [self.popen(*args) for args in commands]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=20)
            assert "Traceback" not in err, err
            results.append(Result(p.returncode, out, err))
        return results

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*WF, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )


@pytest.fixture
def wf(server: Server) -> Wf:
    return Wf(server.address)


def closed_port() -> int:
    """A port nothing listens on (bound a moment ago, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_status(wf: Wf, run_id: str, status: str, timeout: float = 5) -> dict[str, Any]:
    """Poll the run (with the library: quicker than a process per poll) until ``status``;
    return it as ``wf get --json`` shows it."""
    deadline = time.monotonic() + timeout
    with SyncWorkflowClient(wf.address) as client:
        while True:
            try:
                run = client.get_run(run_id)
            except NotFoundError:  # not started yet (the process starting it is)
                if time.monotonic() > deadline:
                    raise
            else:
                if run.status == status or time.monotonic() > deadline:
                    assert run.status == status, run
                    return run_doc(run)
            time.sleep(0.02)
