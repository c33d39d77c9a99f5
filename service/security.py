"""Start-up checks shared by authentication and TLS: what counts as a local address, and
the error that stops the server before it listens."""

from __future__ import annotations

import ipaddress


class SecuritySetupError(Exception):
    """A security setting cannot be used; the message names the setting and the fix."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_exposure(host: str, *, authenticated: bool, insecure: bool) -> None:
    """Refuse to serve a non-loopback address without any way to authenticate callers."""
    if authenticated or insecure or is_loopback(host):
        return
    raise SecuritySetupError(
        f"--host {host} is reachable from other machines but no authentication is "
        "configured: set --auth-tokens-file (or WORKFLOW_AUTH_TOKENS), or --tls-client-ca "
        "for client certificates; or pass --insecure (WORKFLOW_INSECURE=1) to serve "
        "without authentication anyway"
    )
