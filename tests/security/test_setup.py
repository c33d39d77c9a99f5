"""Start-up: the token document, the loopback rule and TLS files, each refused with a
message naming the setting and the problem."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from service._pb import workflow_pb2 as pb
from service._pb import workflow_pb2_grpc as pb_grpc
from service.auth import Scope, TokenRegistry, load_tokens
from service.config import parse_args
from service.logs import KeyValueFormatter
from service.security import SecuritySetupError, is_loopback
from tests.cli.conftest import start_server, stop_server
from tests.service.conftest import struct

from .certs import Certificates
from .conftest import TOKENS, md, token_document

SECRET = "s3cret-" + "x" * 20
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


def doc(*entries: dict[str, Any]) -> str:
    return json.dumps({"tokens": list(entries)})


def test_a_token_document_parses_into_principals() -> None:
    registry = TokenRegistry.parse(token_document(), "test")
    by_name = {p.name: p for p in registry.principals}
    assert set(by_name) == set(TOKENS)
    assert by_name["admin"].scopes == {Scope.ADMIN}
    assert by_name["echo-team"].workflows == {"echo", "approval"}
    assert by_name["reader"].workflows is None
    for name, token in TOKENS.items():
        principal = registry.authenticate(token.secret)
        assert principal is not None and principal.name == name
    assert registry.authenticate(TOKENS["admin"].secret[:-1]) is None
    assert registry.authenticate("") is None


def test_an_accepted_authorization_value_is_recalled_only_by_its_own_registry() -> None:
    registry = TokenRegistry.parse(token_document(), "test")
    value = f"Bearer {TOKENS['admin'].secret}"
    assert registry.recall(value) is None  # nothing is recalled before it was accepted
    principal = registry.authenticate(TOKENS["admin"].secret)
    assert principal is not None
    registry.remember(value, principal)
    assert registry.recall(value) is principal
    assert registry.recall(value.encode()) is principal  # a bytes value is the same value
    assert registry.recall(value + "x") is None
    assert registry.recall(f"Bearer {TOKENS['reader'].secret}") is None
    # A reloaded document is a new registry: it recalls nothing the old one accepted.
    assert TokenRegistry.parse(token_document(), "test").recall(value) is None


def test_the_recalled_values_are_bounded() -> None:
    registry = TokenRegistry.parse(token_document(), "test")
    principal = registry.principals[0]
    values = [f"Bearer {i:04d}" for i in range(3000)]
    for value in values:
        registry.remember(value, principal)
    assert registry.recall(values[-1]) is principal
    assert sum(registry.recall(v) is not None for v in values) <= 1024


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected"),
        (doc(), "lists no tokens"),
        (doc({"token_sha256": DIGEST, "scopes": ["read"]}), "tokens[0]: 'name' is required"),
        (doc({"name": "a", "scopes": ["read"]}), "tokens[0] ('a'): set exactly one"),
        (
            doc({"name": "a", "token": SECRET, "token_sha256": DIGEST, "scopes": ["read"]}),
            "set exactly one",
        ),
        (doc({"name": "a", "token_sha256": "abc", "scopes": ["read"]}), "64 hex digits"),
        (doc({"name": "a", "token": "short", "scopes": ["read"]}), "16 or more characters"),
        (doc({"name": "a", "token_sha256": DIGEST, "scopes": []}), "'scopes' must be"),
        (doc({"name": "a", "token_sha256": DIGEST, "scopes": ["write"]}), "'scopes' must be"),
        (doc({"name": "a", "token_sha256": DIGEST, "scope": ["read"]}), "unknown field(s) scope"),
        (
            doc({"name": "a", "token_sha256": DIGEST, "scopes": ["read"], "workflows": "echo"}),
            "'workflows' must be a list",
        ),
        (
            doc(
                {"name": "a", "token_sha256": DIGEST, "scopes": ["read"]},
                {"name": "a", "token_sha256": "0" * 64, "scopes": ["read"]},
            ),
            "tokens[1]: the name 'a' is used twice",
        ),
        (
            doc(
                {"name": "a", "token_sha256": DIGEST, "scopes": ["read"]},
                {"name": "b", "token": SECRET, "scopes": ["run"]},
            ),
            "tokens[1] ('b') has the same secret as 'a'",
        ),
    ],
)
def test_a_bad_token_document_is_refused_with_what_to_fix(text: str, problem: str) -> None:
    with pytest.raises(SecuritySetupError) as info:
        TokenRegistry.parse(text, "tokens.json")
    message = str(info.value)
    assert message.startswith("tokens.json: ")
    assert problem in message
    assert SECRET not in message


def test_tokens_come_from_a_file_or_the_environment_not_both(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(token_document())
    assert load_tokens(None, None) is None
    from_file = load_tokens(str(path), None)
    from_env = load_tokens(None, token_document())
    assert from_file is not None and from_env is not None
    assert from_file[1] == f"--auth-tokens-file {path}"
    assert from_env[1] == "WORKFLOW_AUTH_TOKENS"
    with pytest.raises(SecuritySetupError, match="use one of them"):
        load_tokens(str(path), token_document())
    with pytest.raises(SecuritySetupError, match=r"tokens\.json: cannot read it"):
        load_tokens(str(tmp_path / "missing" / "tokens.json"), None)


def test_a_file_others_can_read_with_plain_secrets_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(token_document())  # "admin" is listed as a plain token
    hashed_only = tmp_path / "hashed.json"
    hashed_only.write_text(
        doc({"name": "a", "token_sha256": DIGEST, "scopes": ["read"]}),
    )
    with caplog.at_level(logging.WARNING, logger="service.auth"):
        for p, mode in [(path, 0o644), (hashed_only, 0o644), (path, 0o600)]:
            p.chmod(mode)
            load_tokens(str(p), None)
    warned = [KeyValueFormatter().format(r) for r in caplog.records]
    assert len(warned) == 1
    assert "event=tokens_file_exposed" in warned[0] and "tokens=admin" in warned[0]
    assert "mode=644" in warned[0]
    assert TOKENS["admin"].secret not in warned[0]


def test_tokens_are_not_a_command_line_option_nor_in_the_config_repr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for option in ("--auth-tokens", "--auth-token"):  # nor an abbreviation of the file option
        with pytest.raises(SystemExit) as info:
            parse_args([option, token_document()])
        assert info.value.code == 2
        assert TOKENS["admin"].secret not in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a value argparse would read as an option
        parse_args(["--auth-tokens", "-" + TOKENS["admin"].secret])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "WORKFLOW_AUTH_TOKENS" in err and TOKENS["admin"].secret not in err
    monkeypatch.setenv("WORKFLOW_AUTH_TOKENS", token_document())
    config = parse_args([])
    assert config.auth_tokens == token_document()
    assert TOKENS["admin"].secret not in repr(config)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ---- the server process ----------------------------------------------------------------------


def start_fails(*options: str) -> str:
    """Run the server with ``options``; it must exit at once with status 1. Returns stderr."""
    p = subprocess.run(
        [sys.executable, "-m", "service", "--port", "0", "--store", "memory", *options],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 1, p
    assert "Traceback" not in p.stderr, p.stderr
    return p.stderr.strip().splitlines()[-1]


def test_a_non_loopback_host_without_authentication_is_refused() -> None:
    for host in ("0.0.0.0", "::"):
        line = start_fails("--host", host)
        assert line.startswith(f"workflow-server: --host {host} is reachable from other machines")
        assert "--insecure" in line and "--auth-tokens-file" in line


@pytest.mark.parametrize("how", ["flag", "env"])
def test_insecure_serves_a_non_loopback_host_without_authentication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv("WORKFLOW_INSECURE", "1")
    options = ["--insecure"] if how == "flag" else []
    server = start_server(tmp_path / "server.log", "--host", "0.0.0.0", *options)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            assert stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=10).workflows
    finally:
        stop_server(server)


def test_a_token_file_makes_a_non_loopback_host_acceptable(
    tmp_path: Path, tokens_file: Path
) -> None:
    server = start_server(
        tmp_path / "server.log", "--host", "0.0.0.0", "--auth-tokens-file", str(tokens_file)
    )
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            resp = stub.ListWorkflows(pb.ListWorkflowsRequest(), metadata=md("reader"), timeout=10)
            assert "echo" in [w.name for w in resp.workflows]
    finally:
        stop_server(server)
    log = (tmp_path / "server.log").read_text()
    assert "event=security auth=tokens tokens=5 tls=off" in log
    assert not any(t.secret in log for t in TOKENS.values())


def test_tokens_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_AUTH_TOKENS", token_document())
    server = start_server(tmp_path / "server.log")
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            resp = stub.RunWorkflow(
                pb.RunWorkflowRequest(workflow="echo", input=struct(message="hi"), wait=True),
                metadata=md("runner"),
                timeout=10,
            )
            assert resp.run.status == pb.RUN_STATUS_SUCCEEDED
            with pytest.raises(grpc.RpcError) as info:
                stub.CancelRun(pb.CancelRunRequest(run_id=resp.run.run_id), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            # The environment cannot change under a running process: SIGHUP says so.
            server.proc.send_signal(signal.SIGHUP)
            _wait_for_log(tmp_path / "server.log", "event=tokens_not_reloaded", 1)
            assert stub.ListWorkflows(pb.ListWorkflowsRequest(), metadata=md("reader")).workflows
    finally:
        stop_server(server)


def test_bad_security_settings_stop_the_server_with_a_clear_message(
    tmp_path: Path, certs: Certificates
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(doc({"name": "ci", "token": SECRET, "scopes": ["deploy"]}))
    limited = tmp_path / "limited.json"
    limited.write_text(
        doc({"name": "ci", "token": SECRET, "scopes": ["run"], "workflows": ["ech"]})
    )
    missing = tmp_path / "missing.pem"
    cases = {
        f"--auth-tokens-file {bad}: tokens[0] ('ci'): 'scopes' must be": [
            "--auth-tokens-file",
            str(bad),
        ],
        f"--auth-tokens-file {missing}: cannot read it": ["--auth-tokens-file", str(missing)],
        "names workflows this server does not host: ech": ["--auth-tokens-file", str(limited)],
        f"--tls-cert {missing}: cannot read it": [
            "--tls-cert",
            str(missing),
            "--tls-key",
            str(certs.server.key),
        ],
        f"--tls-key {certs.server.cert}: not a PEM file holding a private key": [
            "--tls-cert",
            str(certs.server.cert),
            "--tls-key",
            str(certs.server.cert),
        ],
        "TLS needs both --tls-cert and --tls-key": ["--tls-cert", str(certs.server.cert)],
        "--tls-client-ca needs --tls-cert and --tls-key": ["--tls-client-ca", str(certs.ca)],
    }
    for expected, options in cases.items():
        line = start_fails(*options)
        assert line.startswith("workflow-server: ") and expected in line, (options, line)
        assert SECRET not in line


def _wait_for_log(log: Path, text: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while log.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count} time(s)"
        time.sleep(0.02)


def test_sighup_reloads_the_tokens_file_and_keeps_the_old_tokens_if_it_is_bad(
    tmp_path: Path,
) -> None:
    """Tokens are rotated without a restart: after SIGHUP a removed token is refused and a
    new one accepted; a file that no longer parses leaves the tokens in use."""
    tokens = tmp_path / "tokens.json"
    old, new = TOKENS["reader"], TOKENS["runner"]
    tokens.write_text(token_document({"reader": old}))
    tokens.chmod(0o600)
    log = tmp_path / "server.log"
    server = start_server(log, "--auth-tokens-file", str(tokens))
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)

            def code(name: str) -> grpc.StatusCode:
                try:
                    stub.ListWorkflows(pb.ListWorkflowsRequest(), metadata=md(name), timeout=10)
                except grpc.RpcError as e:
                    return e.code()  # type: ignore[attr-defined, no-any-return]
                return grpc.StatusCode.OK

            assert (code("reader"), code("runner")) == (
                grpc.StatusCode.OK,
                grpc.StatusCode.UNAUTHENTICATED,
            )
            tokens.write_text(token_document({"runner": new}))
            server.proc.send_signal(signal.SIGHUP)
            _wait_for_log(log, "event=tokens_reloaded tokens=1", 1)
            assert (code("reader"), code("runner")) == (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.OK,
            )

            tokens.write_text('{"tokens": [')  # half-written
            server.proc.send_signal(signal.SIGHUP)
            _wait_for_log(log, "event=tokens_reload_failed", 1)
            assert code("runner") == grpc.StatusCode.OK
            assert server.proc.poll() is None
    finally:
        stop_server(server)
    text = log.read_text()
    assert "kept=" in text and not any(t.secret in text for t in TOKENS.values())
