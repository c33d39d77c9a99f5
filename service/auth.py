"""Bearer-token authentication and scope checks.

Tokens are configured in a JSON document (a file, or the WORKFLOW_AUTH_TOKENS variable):
each has a name (what logs show), its secret as ``token`` or as ``token_sha256`` (hex of
the SHA-256 digest, so the file need not hold the secret), its ``scopes`` and, optionally,
the ``workflows`` it may touch. Every scope includes ``read``; ``admin`` (or ``*``) allows
everything.

:class:`AuthInterceptor` authenticates each call and checks the scope its method needs,
then binds the caller to the handler's context so the servicer can check what only it
knows: which workflow a run belongs to (:func:`authorize`, :func:`allowed_workflows`).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import inspect
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, NoReturn

import grpc

from . import logs
from .errors import GrpcErrors, PermissionDeniedError, ServiceError, UnauthenticatedError
from .interceptors import Behavior, Handler, HandlerWrapper, call_metadata
from .security import SecuritySetupError

log = logging.getLogger("service.auth")


class Scope(StrEnum):
    READ = "read"  # GetRun, ListRuns, ListWorkflows, StreamEvents of a run, reflection
    RUN = "run"  # RunWorkflow, StreamEvents that starts a run
    CONTROL = "control"  # CancelRun, SendEvent
    ADMIN = "admin"  # everything, including methods not listed here


_SCOPE_NAMES = {**{s.value: s for s in Scope}, "*": Scope.ADMIN}

_WORKFLOW_SERVICE = "/workflow.v1.WorkflowService/"
METHOD_SCOPES: dict[str, Scope] = {
    _WORKFLOW_SERVICE + "RunWorkflow": Scope.RUN,
    # Starting a run through StreamEvents also needs RUN; the servicer checks that.
    _WORKFLOW_SERVICE + "StreamEvents": Scope.READ,
    _WORKFLOW_SERVICE + "GetRun": Scope.READ,
    _WORKFLOW_SERVICE + "ListRuns": Scope.READ,
    _WORKFLOW_SERVICE + "ListWorkflows": Scope.READ,
    _WORKFLOW_SERVICE + "CancelRun": Scope.CONTROL,
    _WORKFLOW_SERVICE + "SendEvent": Scope.CONTROL,
}
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # load balancers and probes carry no token
READ_PREFIXES = ("/grpc.reflection.",)  # what buf curl and grpcurl ask first


def required_scope(method: str) -> Scope:
    """The scope a method needs; methods nobody listed need ``admin`` (fail closed)."""
    scope = METHOD_SCOPES.get(method)
    if scope is not None:
        return scope
    return Scope.READ if method.startswith(READ_PREFIXES) else Scope.ADMIN


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token says the caller is, and what it may do."""

    name: str
    scopes: frozenset[Scope]
    workflows: frozenset[str] | None = None  # None: every workflow
    # Every scope the token allows, its own and those they include: one set lookup per check.
    granted: frozenset[Scope] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every = Scope.ADMIN in self.scopes
        granted = frozenset(Scope) if every else self.scopes | {Scope.READ}
        object.__setattr__(self, "granted", granted)

    def refusal(self, scope: Scope, workflow: str | None = None) -> PermissionDeniedError | None:
        """Why the token may not do ``scope`` on ``workflow`` (None or "": no particular
        workflow; a missing name is the handler's INVALID_ARGUMENT to report), or None when
        it may."""
        if scope not in self.granted:
            return PermissionDeniedError(
                f"token '{self.name}' lacks the '{scope}' scope this call needs "
                f"(it has: {', '.join(sorted(self.scopes))})"
            )
        if workflow and self.workflows is not None and workflow not in self.workflows:
            return PermissionDeniedError(
                f"token '{self.name}' may not use workflow '{workflow}' "
                f"(it may use: {', '.join(sorted(self.workflows)) or 'none'})"
            )
        return None


# ---- the configured tokens -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


_MAX_ACCEPTED = 1024  # authorization values recalled without hashing each call


class TokenRegistry:
    """The configured tokens, kept only as SHA-256 digests."""

    def __init__(
        self, entries: Iterable[tuple[bytes, Principal]], plain_secrets: Iterable[str] = ()
    ) -> None:
        self._entries = [_Entry(d, p) for d, p in entries]
        self.plain_secrets = sorted(plain_secrets)  # names of entries given as "token"
        # Authorization values already accepted, by their MAC under a key of this registry's
        # own (see recall): a reload makes a new registry, so revoked tokens are forgotten.
        self._keyed = hashlib.blake2s(key=os.urandom(32))  # copied per MAC: no key setup
        self._accepted: dict[bytes, Principal] = {}

    @property
    def principals(self) -> list[Principal]:
        return [e.principal for e in self._entries]

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal, or None. Compares against every entry in constant time,
        so the time taken says nothing about which entry nearly matched."""
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest) and found is None:
                found = entry.principal
        return found

    def recall(self, value: str | bytes) -> Principal | None:
        """The principal of an authorization metadata value accepted before, or None.

        Callers send the same value on every call; hashing it with SHA-256 and comparing
        the digest with every entry's costs more than some calls. The index is keyed by a
        BLAKE2 MAC of the value under a random key of this registry's: a lookup's timing
        depends only on MACs a caller cannot compute, so it tells nothing about any token
        (the comparison of MACs under a secret key, rather than of the secrets)."""
        return self._accepted.get(self._mac(value))

    def remember(self, value: str | bytes, principal: Principal) -> None:
        """Let :meth:`recall` find ``principal`` by ``value``, an authorization value that
        :meth:`authenticate` accepted. Only accepted values are kept; spellings of them
        ("bearer" or "Bearer", extra spaces) are bounded by clearing the index when full."""
        if len(self._accepted) >= _MAX_ACCEPTED:
            self._accepted.clear()
        self._accepted[self._mac(value)] = principal

    def _mac(self, value: str | bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass"))
        return mac.digest()

    def check_workflows(self, known: Iterable[str], source: str) -> None:
        """Refuse workflow names the server does not host (most likely typos)."""
        hosted = set(known)
        for p in self.principals:
            unknown = sorted((p.workflows or frozenset()) - hosted)
            if unknown:
                raise SecuritySetupError(
                    f"{source}: token '{p.name}' names workflows this server does not host: "
                    f"{', '.join(unknown)} (it hosts: {', '.join(sorted(hosted))})"
                )

    @classmethod
    def parse(cls, text: str, source: str) -> TokenRegistry:
        """Read the JSON document; every problem is a :class:`SecuritySetupError` that names
        ``source`` and the entry, never a secret."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise SecuritySetupError(
                f"{source}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            ) from None
        if (
            not isinstance(doc, dict)
            or set(doc) != {"tokens"}
            or not isinstance(doc["tokens"], list)
        ):
            raise SecuritySetupError(
                f'{source}: expected {{"tokens": [{{"name": ..., "token_sha256": ..., '
                '"scopes": [...]}, ...]}'
            )
        if not doc["tokens"]:
            raise SecuritySetupError(f"{source}: lists no tokens, so every call would be refused")
        entries: list[tuple[bytes, Principal]] = []
        names: set[str] = set()
        digests: dict[bytes, str] = {}
        for i, item in enumerate(doc["tokens"]):
            digest, principal = _parse_entry(item, f"{source}: tokens[{i}]")
            if principal.name in names:
                raise SecuritySetupError(
                    f"{source}: tokens[{i}]: the name '{principal.name}' is used twice"
                )
            if digest in digests:
                raise SecuritySetupError(
                    f"{source}: tokens[{i}] ('{principal.name}') has the same secret as "
                    f"'{digests[digest]}'"
                )
            names.add(principal.name)
            digests[digest] = principal.name
            entries.append((digest, principal))
        plain = [e["name"] for e in doc["tokens"] if "token" in e]
        return cls(entries, plain)


_ENTRY_KEYS = {"name", "token", "token_sha256", "scopes", "workflows"}


def _parse_entry(item: Any, where: str) -> tuple[bytes, Principal]:
    if not isinstance(item, dict):
        raise SecuritySetupError(f"{where}: expected an object")
    unknown = sorted(set(item) - _ENTRY_KEYS)
    if unknown:
        raise SecuritySetupError(
            f"{where}: unknown field(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_ENTRY_KEYS))})"
        )
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SecuritySetupError(f"{where}: 'name' is required (a label that logs show)")
    where = f"{where} ('{name}')"
    if ("token" in item) == ("token_sha256" in item):
        raise SecuritySetupError(f"{where}: set exactly one of 'token' or 'token_sha256'")
    if "token" in item:
        secret = item["token"]
        if not isinstance(secret, str) or len(secret) < 16:
            raise SecuritySetupError(f"{where}: 'token' must be a string of 16 or more characters")
        digest = hashlib.sha256(secret.encode()).digest()
    else:
        hexdigest = item["token_sha256"]
        try:
            digest = bytes.fromhex(hexdigest) if isinstance(hexdigest, str) else b""
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise SecuritySetupError(
                f"{where}: 'token_sha256' must be 64 hex digits (e.g. the output of "
                "printf %s TOKEN | sha256sum)"
            )
    scopes = item.get("scopes")
    if (
        not isinstance(scopes, list)
        or not scopes
        or not all(isinstance(s, str) and s in _SCOPE_NAMES for s in scopes)
    ):
        raise SecuritySetupError(
            f"{where}: 'scopes' must be a non-empty list of: {', '.join(_SCOPE_NAMES)}"
        )
    workflows = item.get("workflows")
    if workflows is not None and (
        not isinstance(workflows, list) or not all(isinstance(w, str) and w for w in workflows)
    ):
        raise SecuritySetupError(
            f"{where}: 'workflows' must be a list of workflow names (leave it out for all)"
        )
    return digest, Principal(
        name=name,
        scopes=frozenset(_SCOPE_NAMES[s] for s in scopes),
        workflows=None if workflows is None else frozenset(workflows),
    )


def load_tokens(path: str | None, inline: str | None) -> tuple[TokenRegistry, str] | None:
    """The tokens from ``--auth-tokens-file`` or WORKFLOW_AUTH_TOKENS (not both), with a
    description of where they came from; None when neither is set (auth off)."""
    if path and inline:
        raise SecuritySetupError(
            "both --auth-tokens-file and WORKFLOW_AUTH_TOKENS are set; use one of them"
        )
    if inline:
        source = "WORKFLOW_AUTH_TOKENS"
        return TokenRegistry.parse(inline, source), source
    if not path:
        return None
    source = f"--auth-tokens-file {path}"
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            text = f.read()
            mode = os.fstat(f.fileno()).st_mode
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise SecuritySetupError(f"{source}: cannot read it ({reason})") from None
    registry = TokenRegistry.parse(text, source)
    if registry.plain_secrets and mode & 0o077:
        logs.event(
            log,
            logging.WARNING,
            "tokens_file_exposed",
            file=path,
            mode=f"{mode & 0o777:o}",
            tokens=",".join(registry.plain_secrets),
            advice="other users may read these secrets; chmod 600 the file, or list them "
            "as token_sha256",
        )
    return registry, source


# ---- the caller of the current call ----------------------------------------------------------


class Caller(NamedTuple):  # made on every call: a tuple is the cheapest record
    principal: Principal
    method: str
    context: grpc.aio.ServicerContext[Any, Any]

    @property
    def peer(self) -> str:
        return str(self.context.peer())  # looked up only when a refusal is logged


_new_tuple = tuple.__new__

_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "workflow_caller", default=None
)


def current_caller() -> Caller | None:
    """The authenticated caller of the call being handled; None when auth is off."""
    return _CALLER.get()


def authorize(scope: Scope, workflow: str | None = None) -> None:
    """Raise :class:`PermissionDeniedError` unless the caller may do ``scope`` on
    ``workflow`` (any workflow when None). Allows everything when auth is off."""
    caller = _CALLER.get()
    if caller is None:
        return
    refusal = caller.principal.refusal(scope, workflow)
    if refusal is not None:
        _log_rejection(
            caller.method, "permission_denied", caller.peer, caller.principal.name, refusal
        )
        raise refusal


def allowed_workflows() -> frozenset[str] | None:
    """The workflows the caller may see; None for all."""
    caller = _CALLER.get()
    return None if caller is None else caller.principal.workflows


def _log_rejection(
    method: str, reason: str, peer: str, token_name: str | None, error: ServiceError
) -> None:
    logs.event(
        log,
        logging.WARNING,
        "call_rejected",
        method=method,
        reason=reason,
        peer=peer,
        token_name=token_name,
        detail=str(error),
    )


# ---- the interceptor -----------------------------------------------------------------------

_MISSING = "this server requires a token: send the metadata 'authorization: Bearer <token>'"
_MALFORMED = "the authorization metadata must be 'Bearer <token>'"
_UNKNOWN = (
    "the bearer token is not valid here: send 'authorization: Bearer <token>' with a token "
    "this server knows"
)


class AuthInterceptor(HandlerWrapper):
    """Authenticates every call but health checks and checks its method's scope.

    The check runs inside the handler, from the call's own metadata, so each method's
    guarded handler is built once and reused."""

    def __init__(self, tokens: TokenRegistry) -> None:
        self.tokens = tokens

    def wants(self, method: str) -> bool:
        return not method.startswith(OPEN_PREFIXES)

    def wrap(self, method: str, handler: Handler, behavior: Behavior) -> Behavior:
        return self._guard(behavior, method)

    def admit(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], scope: Scope
    ) -> Caller:
        """The caller of this call; raises (and logs) when its token is missing, unknown
        or lacks ``scope``, the one the method needs."""
        value = None  # the first authorization entry's
        for key, entry in call_metadata(context):
            if key == "authorization":
                value = entry
                break
        tokens = self.tokens  # read once: a reload replaces it whole
        principal = None if value is None else tokens.recall(value)
        if principal is not None and scope in principal.granted:
            # The tuple itself: a NamedTuple's constructor is a Python call.
            return _new_tuple(Caller, (principal, method, context))
        error: ServiceError
        if value is None:
            reason, error = "missing_token", UnauthenticatedError(_MISSING)
        elif principal is None and not (credential := _bearer_token(value)):
            reason, error = "malformed_token", UnauthenticatedError(_MALFORMED)
        elif principal is None and (principal := tokens.authenticate(credential)) is None:
            reason, error = "unknown_token", UnauthenticatedError(_UNKNOWN)
        else:
            assert principal is not None
            tokens.remember(value, principal)
            if scope in principal.granted:
                return _new_tuple(Caller, (principal, method, context))
            refusal = principal.refusal(scope)
            assert refusal is not None  # the scope is not granted
            reason, error = "permission_denied", refusal
        _log_rejection(
            method, reason, str(context.peer()), principal.name if principal else None, error
        )
        raise error

    def _guard(self, behavior: Behavior, method: str) -> Behavior:
        """``behavior`` run only for an admitted caller, who is set in its context for the
        servicer to read."""
        admit = self.admit
        scope = required_scope(method)
        if inspect.isasyncgenfunction(behavior):

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                try:
                    caller = admit(method, context, scope)
                except ServiceError as e:
                    await _refuse(context, e)
                _CALLER.set(caller)
                async for item in behavior(request, context):
                    yield item

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                caller = admit(method, context, scope)
            except ServiceError as e:
                await _refuse(context, e)
            _CALLER.set(caller)
            return await behavior(request, context)

        return call


def _bearer_token(value: str | bytes) -> str:
    """The token of a ``Bearer <token>`` value; "" when it is not one."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    scheme, _, token = text.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], error: ServiceError) -> NoReturn:
    """Answer with ``error``'s status, through the same error map as every handler."""
    async with GrpcErrors(context):
        raise error
    raise AssertionError("GrpcErrors always aborts")
