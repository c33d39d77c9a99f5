"""Server TLS credentials from PEM files; with a client CA, clients must present a
certificate it signed (mutual TLS)."""

from __future__ import annotations

import os

import grpc

from .security import SecuritySetupError


def _read_pem(option: str, path: str, marker: str) -> bytes:
    try:
        with open(os.path.expanduser(path), "rb") as f:
            data = f.read()
    except OSError as e:
        raise SecuritySetupError(f"{option} {path}: cannot read it ({e.strerror})") from None
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise SecuritySetupError(f"{option} {path}: not a PEM file holding a {marker.lower()}")
    return data


def server_credentials(
    cert: str | None, key: str | None, client_ca: str | None
) -> grpc.ServerCredentials | None:
    """Credentials for ``add_secure_port``; None when TLS is not configured."""
    if not cert and not key:
        if client_ca:
            raise SecuritySetupError(
                "--tls-client-ca needs --tls-cert and --tls-key: client certificates are "
                "checked only over TLS"
            )
        return None
    if not cert or not key:
        raise SecuritySetupError("TLS needs both --tls-cert and --tls-key (PEM files)")
    chain = _read_pem("--tls-cert", cert, "CERTIFICATE")
    private_key = _read_pem("--tls-key", key, "PRIVATE KEY")
    roots = _read_pem("--tls-client-ca", client_ca, "CERTIFICATE") if client_ca else None
    return grpc.ssl_server_credentials(
        [(private_key, chain)], root_certificates=roots, require_client_auth=roots is not None
    )
