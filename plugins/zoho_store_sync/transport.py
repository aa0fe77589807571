"""One retrying HTTP transport for Zoho, Magento and DecoNetwork: a plain session, backoff, Retry-After.

What counts as temporary is decided here, once: HTTP 429, every 5xx, and a connection that failed, timed out or
broke off mid-body. A system adds its own "try again" signals by raising ``TryAgain`` from its ``on_answer``
callback (or from any step retried with ``keep_trying``), and stops a call for good by raising its own error there.
The waits go through an injectable ``sleep`` and ``clock``, so tests record them instead of waiting.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from requests.auth import AuthBase
from requests.structures import CaseInsensitiveDict

from zoho_store_sync.errors import TryLater

log = logging.getLogger(__name__)

T = TypeVar("T")

# A connection that failed, timed out or broke off mid-body: the same request may well succeed next time.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def transient_status(status: int) -> bool:
    """429 (too many requests) and every 5xx: the server may answer the same request differently later."""
    return status == 429 or status >= 500


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (epoch; default: the time now): a number of seconds or
    an HTTP date. None when absent or unreadable; never negative."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return max(0.0, (when - reference).total_seconds())


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: retry ``n`` waits a random time below ``min(cap, base * 2**n)``.

    ``floor`` is the share of that ceiling always waited: 0 is full jitter (concurrent clients spread out the
    most); 0.5 waits between half the ceiling and the ceiling.
    """

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2**attempt)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = self.ceiling(attempt)
        return (rng or random).uniform(ceiling * self.floor, ceiling)


class TryAgain(TryLater):
    """A temporary failure: raised inside a retried step (or by an ``on_answer`` callback) to have it retried.

    ``retry_after``: seconds to wait instead of the backoff (a ``Retry-After`` header, say). ``response`` or
    ``error``: what the last attempt got, handed back when the retries run out.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        response: requests.Response | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.response = response
        self.error = error


def plain_session(
    headers: dict[Any, Any] | None = None, *, options: Mapping[str, Any] | None = None, tcp_keep_alive: bool = False
) -> requests.Session:
    """A requests session asking for JSON, with no basic auth and no connection extra as a header (Airflow's
    HttpHook sends login/password as basic auth and every unknown extra, secrets included, as one).

    ``options``: a connection's extras; only the client settings among them are used (proxies, verify, cert,
    max_redirects, trust_env, stream). ``tcp_keep_alive``: keep-alive probes on idle sockets, as HttpHook has.
    """
    session = requests.Session()
    session.auth = None
    session.headers = CaseInsensitiveDict(requests.utils.default_headers())
    session.headers["Accept"] = "application/json"
    if options:
        session.proxies = options.get("proxies", options.get("proxy")) or {}
        session.verify = options.get("verify", options.get("verify_ssl", True))
        session.cert = options.get("cert")
        session.max_redirects = int(options.get("max_redirects", requests.models.DEFAULT_REDIRECT_LIMIT))
        session.trust_env = options.get("trust_env", True)
        session.stream = options.get("stream", False)
    if tcp_keep_alive:
        from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter

        adapter = TCPKeepAliveAdapter(idle=120, count=20, interval=30)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    if headers:
        session.headers.update(headers)
    return session


class RetryingTransport:
    """HTTP calls to one system, retried while the failure is temporary.

    :param name: names the system in log lines ("zoho", "magento", ...).
    :param max_retries: retries of one call after its first attempt.
    :param backoff: the waits between attempts when the server names none.
    :param timeout: seconds per attempt (connect and read).
    :param session_factory: makes a session; called once per thread (a session is not documented as thread-safe).
    :param max_in_flight: requests allowed in flight at once through this transport (None: no cap).
    :param on_retry: called before each wait of ``request`` with (the failure, retry index, seconds).
    :param sleep: waits; ``clock``: monotonic seconds for time budgets; ``wall_clock``: epoch seconds for dates.
    """

    def __init__(
        self,
        name: str,
        *,
        max_retries: int = 5,
        backoff: Backoff = Backoff(),
        timeout: float = 60.0,
        session_factory: Callable[[], requests.Session] | None = None,
        max_in_flight: int | None = None,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.session_factory = session_factory or plain_session
        self.on_retry = on_retry
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.responses = 0  # answers received through request(), retried ones included
        self._rng = rng or random.Random()
        self._in_flight: AbstractContextManager[Any] = (
            threading.BoundedSemaphore(max_in_flight) if max_in_flight else contextlib.nullcontext()
        )
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """This thread's keep-alive session."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.session_factory()
        return session

    def send_once(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One attempt, no retry, not counted in ``responses`` (e.g. a token request whose caller decides)."""
        return self.session.request(method, url, timeout=self.timeout, **kwargs)

    def request(
        self,
        method: str,
        url: str | Callable[[], str],
        *,
        auth: AuthBase | Callable[[], AuthBase | None] | None = None,
        on_answer: Callable[[requests.Response], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        renew_auth: Callable[[requests.Response], bool] | None = None,
        retries: int | None = None,
        what: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send, retrying temporary failures; the last answer once the retries run out.

        ``url`` and ``auth`` may be functions, called before every attempt (a token that changed). ``on_answer``
        sees every answer first: it may raise the system's own error (the call stops) or ``TryAgain`` (the
        system's own "try again" signal). ``on_failure`` sees every connection failure. ``renew_auth``: asked
        once about an answer; True means the credentials were renewed, so the request goes again at once (not
        counted as a retry). A connection failure on the last attempt is raised as it is.
        """
        renewed = False

        def attempt() -> requests.Response:
            nonlocal renewed
            while True:
                target = url() if callable(url) else url
                credentials = auth() if callable(auth) and not isinstance(auth, AuthBase) else auth
                try:
                    with self._in_flight:
                        response = self.session.request(
                            method, target, auth=credentials, timeout=self.timeout, **kwargs
                        )
                except TRANSIENT_ERRORS as exc:
                    if on_failure is not None:
                        on_failure(exc)
                    raise TryAgain(f"connection failed ({type(exc).__name__})", error=exc) from None
                with self._lock:
                    self.responses += 1
                if on_answer is not None:
                    try:
                        on_answer(response)
                    except TryAgain as signal:
                        if signal.response is None:
                            signal.response = response
                        raise
                if renew_auth is not None and not renewed and renew_auth(response):
                    renewed = True
                    continue
                if transient_status(response.status_code):
                    raise TryAgain(
                        f"HTTP {response.status_code}",
                        response=response,
                        retry_after=retry_after_seconds(response.headers.get("Retry-After"), now=self.wall_clock()),
                    )
                return response

        def server_wait(failure: BaseException, _: int) -> float | None:
            seconds = getattr(failure, "retry_after", None)
            return None if seconds is None else min(self.backoff.cap, seconds)

        try:
            return self.keep_trying(
                attempt,
                retries=self.max_retries if retries is None else retries,
                wait=server_wait,
                what=what,
                on_retry=self.on_retry,
            )
        except TryAgain as exhausted:
            if exhausted.error is not None:
                raise exhausted.error from None
            assert exhausted.response is not None  # every TryAgain of attempt() carries one or the other
            return exhausted.response

    def keep_trying(
        self,
        step: Callable[[], T],
        *,
        temporary: type[BaseException] | tuple[type[BaseException], ...] = TryAgain,
        retries: int | None = None,
        budget: float | None = None,
        backoff: Backoff | None = None,
        wait: Callable[[Any, int], float | None] | None = None,
        what: str | None = None,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
    ) -> T:
        """``step()``, called again after each ``temporary`` error, until it returns or the tries run out.

        The tries run out after ``retries`` retries (default ``max_retries``), or, with a ``budget`` (seconds),
        when the next wait would end past it. Each wait is ``wait(error, retry index)`` when that gives a
        number, else the ``backoff`` (default: the transport's). The error that ends the tries is raised.
        """
        backoff = backoff or self.backoff
        limit = (self.max_retries if retries is None else retries) if budget is None else retries
        deadline = None if budget is None else self.clock() + budget
        what = what or self.name
        attempt = 0
        while True:
            try:
                return step()
            except temporary as failure:
                if limit is not None and attempt >= limit:
                    raise
                delay = wait(failure, attempt) if wait is not None else None
                if delay is None:
                    delay = backoff.delay(attempt, self._rng)
                if deadline is not None and self.clock() + delay > deadline:
                    raise
                reason = getattr(failure, "reason", None) or type(failure).__name__
                if limit is None:
                    log.warning("%s: %s; waiting %.1f s before trying again", what, reason, delay)
                else:
                    log.warning("%s: %s; retry %d of %d in %.2f s", what, reason, attempt + 1, limit, delay)
                if on_retry is not None:
                    on_retry(failure, attempt, delay)
                self.sleep(delay)
                attempt += 1
