"""Credentials: the bearer token sent with every call, and the channel's TLS settings."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

Metadata = Sequence[tuple[str, str]]


def bearer_metadata(token: str | None) -> Metadata | None:
    """The ``authorization`` metadata for ``token``; None without one."""
    if token is None:
        return None
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError("token: expected one non-empty word (the token, without 'Bearer')")
    return (("authorization", f"Bearer {token}"),)


def channel_credentials(
    tls: bool,
    root_certificates: bytes | None,
    client_cert: bytes | None,
    client_key: bytes | None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials, or None for plaintext. Any certificate implies TLS; without
    ``root_certificates`` the server is checked against the system's trusted CAs."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key: give both (PEM) or neither")
    if not (tls or root_certificates or client_cert):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=root_certificates, private_key=client_key, certificate_chain=client_cert
    )


def open_channel(
    address: str, credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, int]]
) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)
