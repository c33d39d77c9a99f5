"""``wf`` with a token and TLS against a server process with tokens and mutual TLS."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.conftest import Server, Wf, start_server, stop_server
from tests.service.test_generic_tools import BUF

from .certs import Certificates
from .conftest import TOKENS


@dataclass
class SecureWf(Wf):
    """``wf`` with extra environment (no WF_* variables from the test's own)."""

    extra: dict[str, str] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if not k.startswith("WF_")}
        return {**env, **(self.extra or {})}


@pytest.fixture(scope="module")
def mtls_server(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates, tokens_file: Path
) -> Iterator[Server]:
    s = start_server(
        tmp_path_factory.mktemp("mtls-server") / "server.log",
        "--auth-tokens-file",
        str(tokens_file),
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(certs.server.key),
        "--tls-client-ca",
        str(certs.ca),
    )
    try:
        yield s
    finally:
        stop_server(s)


@pytest.fixture(scope="module")
def token_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("wf-tokens")
    files = {}
    for name, token in TOKENS.items():
        path = directory / name
        path.write_text(token.secret + "\n")  # a trailing newline, as editors leave it
        files[name] = path
    return files


def tls_args(certs: Certificates) -> list[str]:
    return [
        "--tls-ca",
        str(certs.ca),
        "--tls-cert",
        str(certs.client.cert),
        "--tls-key",
        str(certs.client.key),
    ]


def test_wf_runs_over_mutual_tls_with_a_token_file(
    mtls_server: Server, certs: Certificates, token_files: dict[str, Path]
) -> None:
    wf = SecureWf(mtls_server.address)
    runner = ["--token-file", str(token_files["runner"]), *tls_args(certs)]
    r = wf.ok(*runner, "run", "echo", "--input", '{"message": "hi"}', "--json")
    assert r.json()["result"] == "hi"
    # The options are accepted after the command too.
    r = wf.ok("run", "ticker", "--input", '{"count": 3, "interval_ms": 1}', "--follow", *runner)
    assert r.out.splitlines()[-1] == "3"
    listed = wf.ok(*runner, "runs", "--json").json()
    assert sorted(run["workflow"] for run in listed) == ["echo", "ticker"]


def test_wf_takes_the_token_and_certificates_from_the_environment(
    mtls_server: Server, certs: Certificates
) -> None:
    wf = SecureWf(
        mtls_server.address,
        extra={
            "WF_TOKEN": TOKENS["reader"].secret,
            "WF_TLS_CA": str(certs.ca),
            "WF_TLS_CERT": str(certs.client.cert),
            "WF_TLS_KEY": str(certs.client.key),
        },
    )
    names = [w["name"] for w in wf.ok("workflows", "--json").json()]
    assert "echo" in names
    # A read-only token cannot start runs: exit 5, one line naming the refusal.
    denied = wf("run", "echo", "--input", '{"message": "x"}')
    assert denied.code == 5, denied
    assert denied.err.startswith("wf: permission denied: ")
    assert TOKENS["reader"].secret not in denied.err


def test_wf_without_a_token_or_without_tls_is_refused(
    mtls_server: Server, certs: Certificates, token_files: dict[str, Path], tmp_path: Path
) -> None:
    wf = SecureWf(mtls_server.address)
    no_token, no_tls, no_client_cert = wf.many(
        [*tls_args(certs), "workflows"],
        ["--token-file", str(token_files["admin"]), "workflows"],
        ["--token-file", str(token_files["admin"]), "--tls-ca", str(certs.ca), "workflows"],
    )
    assert no_token.code == 5 and no_token.err.startswith("wf: unauthenticated: "), no_token
    assert "--token-file" in no_token.err and "WF_TOKEN" in no_token.err
    assert no_tls.code == 3, no_tls
    assert no_client_cert.code == 3, no_client_cert
    assert "over TLS" in no_client_cert.err  # says what to check


def test_wf_refuses_unusable_credential_options(
    mtls_server: Server, certs: Certificates, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    wf = SecureWf(mtls_server.address)
    dashed = "-" + TOKENS["admin"].secret  # a token may start with "-" (token_urlsafe)
    missing_file, empty_file, half_pair, token_flag, dash_flag, dash_joined = wf.many(
        ["--token-file", str(tmp_path / "nope"), "workflows"],
        ["--token-file", str(empty), "workflows"],
        ["--tls-cert", str(certs.client.cert), "workflows"],
        ["--token", TOKENS["admin"].secret, "workflows"],
        ["--token", dashed, "workflows"],
        [f"--token={dashed}", "workflows"],
    )
    assert missing_file.code == 2 and "--token-file" in missing_file.err
    assert empty_file.code == 2 and "empty" in empty_file.err
    assert half_pair.code == 2 and "--tls-key" in half_pair.err
    # No --token option: a secret on the command line is visible to every local user.
    for r in (token_flag, dash_flag, dash_joined):
        assert r.code == 2 and "WF_TOKEN" in r.err, r
    for r in (missing_file, empty_file, half_pair, token_flag, dash_flag, dash_joined):
        assert TOKENS["admin"].secret not in r.err


def test_buf_curl_with_a_token_header_over_mutual_tls(
    mtls_server: Server, certs: Certificates, tmp_path: Path
) -> None:
    """The README's buf curl line: the header from a file, sent to reflection too."""
    headers = tmp_path / "headers"
    headers.write_text(f"authorization: Bearer {TOKENS['runner'].secret}\n")
    base = [
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--cacert",
        str(certs.ca),
        "--cert",
        str(certs.client.cert),
        "--key",
        str(certs.client.key),
        "-H",
        f"@{headers}",
        "-d",
        json.dumps({"workflow": "echo", "input": {"message": "buf"}, "wait": True}),
    ]
    url = f"https://localhost:{mtls_server.port}/workflow.v1.WorkflowService/RunWorkflow"
    ok = subprocess.run(
        [*base, "--reflect-header", "*", url], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["run"]["result"] == "buf"
    # Without --reflect-header the reflection call carries no token and is refused.
    refused = subprocess.run([*base, url], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
