"""``wf``'s token and TLS options. The token comes from a file or WF_TOKEN, never from a
command-line value, which other users of the machine can read in the process list."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from ._auth import channel_credentials

EXIT_USAGE = 2

ENVIRONMENT_HELP = """\
  WF_TOKEN          bearer token to send (--token-file takes precedence)
  WF_TOKEN_FILE     file holding the token, when --token-file is not given
  WF_TLS_CA, WF_TLS_CERT, WF_TLS_KEY
                    defaults for --tls-ca, --tls-cert, --tls-key (any of them turns TLS on)"""


class CredentialsError(Exception):
    """An unusable token or TLS option; the message names it."""


@dataclass(frozen=True)
class Credentials:
    token: str | None
    channel: grpc.ChannelCredentials | None


class _RefuseSecret(argparse.Action):
    """``--token VALUE``: refused without echoing the value (it would otherwise be taken
    as an abbreviation of --token-file, and the secret shown as a file name)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kw: object) -> None:
        parser.error(
            "--token: a token on the command line is visible to other users; use "
            "--token-file PATH or the WF_TOKEN environment variable"
        )


def add_options(parser: argparse.ArgumentParser, hidden: bool = False) -> None:
    """The options; ``hidden`` adds suppressed copies that only override when given (so
    they are accepted after the command too)."""

    def add(*names: str, **kw: object) -> None:
        if hidden:
            kw["default"] = argparse.SUPPRESS
            kw["help"] = argparse.SUPPRESS
        parser.add_argument(*names, **kw)  # type: ignore[arg-type]

    # nargs="?": refused with its reason even when the secret starts with "-", which
    # argparse would otherwise not take as the option's value.
    parser.add_argument("--token", nargs="?", action=_RefuseSecret, help=argparse.SUPPRESS)
    add(
        "--token-file",
        metavar="PATH",
        default=os.environ.get("WF_TOKEN_FILE") or None,
        help="send the bearer token in PATH (default: $WF_TOKEN_FILE, else $WF_TOKEN)",
    )
    add(
        "--tls",
        action="store_true",
        default=False,
        help="connect with TLS, trusting the system's CAs (implied by the options below)",
    )
    add(
        "--tls-ca",
        metavar="PEM",
        default=os.environ.get("WF_TLS_CA") or None,
        help="trust the server certificates these CA certificates signed",
    )
    add(
        "--tls-cert",
        metavar="PEM",
        default=os.environ.get("WF_TLS_CERT") or None,
        help="client certificate, for servers that require one (mutual TLS)",
    )
    add(
        "--tls-key",
        metavar="PEM",
        default=os.environ.get("WF_TLS_KEY") or None,
        help="the client certificate's private key",
    )


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise CredentialsError(f"{option} {path}: cannot read it ({e.strerror or e})") from e


def from_args(args: argparse.Namespace) -> Credentials:
    token: str | None
    if args.token_file:
        token = _read("--token-file", args.token_file).decode(errors="replace").strip()
        if not token:
            raise CredentialsError(f"--token-file {args.token_file}: the file is empty")
    else:
        token = (os.environ.get("WF_TOKEN") or "").strip() or None
    if token is not None and any(c.isspace() for c in token):
        raise CredentialsError("the token must be one word (the token alone, without 'Bearer')")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CredentialsError("--tls-cert and --tls-key: give both or neither")
    channel = channel_credentials(
        args.tls,
        _read("--tls-ca", args.tls_ca) if args.tls_ca else None,
        _read("--tls-cert", args.tls_cert) if args.tls_cert else None,
        _read("--tls-key", args.tls_key) if args.tls_key else None,
    )
    return Credentials(token, channel)
