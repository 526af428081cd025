"""Dashboard sessions: a signed-in browser holds an opaque session id in an HttpOnly, SameSite=Strict
cookie; the platform keeps, in memory, the API key it stands for and the session's CSRF token.

- The key never goes back to the browser (not in a page, not in the cookie): the cookie is a random id.
- Every request re-checks the key against the key store, so a revoked key ends its sessions at once.
- A request that changes something (any method but GET/HEAD) must carry the session's CSRF token
  (a form field or the ``X-CSRF-Token`` header) and come from the dashboard's own origin
  (``Sec-Fetch-Site``/``Origin``); the cookie is never sent cross-site (SameSite=Strict) anyway.
- Sign-in attempts are throttled per client address (``SignInThrottle``): a wrong key costs the
  attacker a slot, and the check itself is a hash lookup (``store/keys.py``), not a comparison that
  leaks by its timing.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
from collections import OrderedDict

from starlette.datastructures import Headers

COOKIE = "trestle_session"
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclasses.dataclass
class Session:
    id: str
    api_key: str
    csrf: str
    expires: float
    notices: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """(level, text) to show once on the next page: an action's outcome."""


class Sessions:
    """Signed-in sessions, newest last; the oldest go first past ``MAX_SESSIONS``."""

    def __init__(self, lifetime: float = SESSION_SECONDS) -> None:
        self.lifetime = lifetime
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, api_key: str) -> Session:
        session = Session(secrets.token_urlsafe(32), api_key, secrets.token_urlsafe(32), time.time() + self.lifetime)
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires < time.time():
            del self._sessions[session_id]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


def cookie_header(session: Session | None, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that sets (or, for None, clears) the session cookie."""
    value, age = (session.id, int(SESSION_SECONDS)) if session else ("", 0)
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict{flags}"


def same_origin(headers: Headers, host: str) -> bool:
    """Whether a request comes from the dashboard's own pages (or is typed in / a bookmark): a browser's
    ``Sec-Fetch-Site`` says so, and an ``Origin`` it sends must name this host. Clients without either
    (curl) are not browsers, and a cookie is all they could replay."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is not None:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or rest.rstrip("/") != host:
            return False
    return True


def csrf_ok(session: Session, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(session.csrf.encode(), token.encode())


class SignInThrottle:
    """At most ``attempts`` failed sign-ins per client address per ``window`` seconds (then 429 until
    the window passes), and at most ``global_attempts`` failures from everyone together (an attacker
    with many addresses); a success does not reset the count."""

    def __init__(self, attempts: int = 10, window: float = 60.0, global_attempts: int = 200) -> None:
        self.attempts = attempts
        self.window = window
        self.global_attempts = global_attempts
        self._failures: dict[str, list[float]] = {}
        self._all: list[float] = []

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        self._all = [t for t in self._all if t > cutoff]
        for client in list(self._failures):
            times = [t for t in self._failures[client] if t > cutoff]
            if times:
                self._failures[client] = times
            else:
                del self._failures[client]

    def blocked(self, client: str) -> bool:
        now = time.monotonic()
        self._prune(now)
        return len(self._failures.get(client, ())) >= self.attempts or len(self._all) >= self.global_attempts

    def failed(self, client: str) -> None:
        now = time.monotonic()
        self._failures.setdefault(client, []).append(now)
        self._all.append(now)
