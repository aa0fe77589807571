"""Specification tests of the one retrying HTTP transport that Zoho, Magento and DecoNetwork calls go through."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from typing import Any

import pytest
import requests
from requests.auth import AuthBase

from zoho_store_sync.transport import (
    TRANSIENT_ERRORS,
    Backoff,
    RetryingTransport,
    TryAgain,
    plain_session,
    retry_after_seconds,
    transient_status,
)

NOW = 1_700_000_000.0  # the wall clock of these tests (epoch seconds)


def answer(status: int, headers: dict[str, str] | None = None, body: bytes = b"{}") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = body
    return response


class ScriptedSession:
    """Plays its script, one answer (a response or an exception to raise) per request; records what was sent."""

    def __init__(self, *script: requests.Response | BaseException) -> None:
        self.script = list(script)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.sent.append({"method": method, "url": url, **kwargs})
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def transport(session: Any, **options: Any) -> tuple[RetryingTransport, list[float]]:
    """A transport over ``session`` whose waits are recorded, never slept."""
    waits: list[float] = []
    settings: dict[str, Any] = {
        "max_retries": 3,
        "backoff": Backoff(base=1.0, cap=8.0),
        "sleep": waits.append,
        "wall_clock": lambda: NOW,
        "rng": random.Random(7),
        **options,
    }
    return RetryingTransport("test", session_factory=lambda: session, **settings), waits


# ---- what counts as temporary -------------------------------------------------------------------------------


def test_a_429_with_retry_after_waits_that_long_then_retries() -> None:
    session = ScriptedSession(answer(429, {"Retry-After": "5"}), answer(200))
    http, waits = transport(session)
    assert http.request("GET", "https://api.example/x").status_code == 200
    assert waits == [5.0] and len(session.sent) == 2


def test_a_retry_after_given_as_an_http_date_waits_until_that_date() -> None:
    session = ScriptedSession(answer(503, {"Retry-After": email.utils.formatdate(NOW + 7, usegmt=True)}), answer(200))
    http, waits = transport(session)
    assert http.request("GET", "https://api.example/x").status_code == 200
    assert waits == [7.0]


def test_a_retry_after_beyond_the_backoff_cap_waits_only_the_cap() -> None:
    session = ScriptedSession(answer(429, {"Retry-After": "3600"}), answer(200))
    http, waits = transport(session)
    http.request("GET", "https://api.example/x")
    assert waits == [8.0]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_429_and_every_5xx_are_retried(status: int) -> None:
    session = ScriptedSession(answer(status), answer(200))
    http, waits = transport(session)
    assert http.request("GET", "https://api.example/x").status_code == 200
    assert len(waits) == 1 and transient_status(status)


@pytest.mark.parametrize("status", [200, 204, 207, 304, 400, 401, 403, 404, 412])
def test_any_other_answer_is_returned_at_once(status: int) -> None:
    session = ScriptedSession(answer(status))
    http, waits = transport(session)
    assert http.request("GET", "https://api.example/x").status_code == status
    assert waits == [] and not transient_status(status)


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError("refused"),
        requests.ConnectTimeout("slow connect"),
        requests.ReadTimeout("slow answer"),
        requests.exceptions.ChunkedEncodingError("cut mid-body"),
    ],
)
def test_connection_failures_timeouts_and_bodies_cut_short_are_retried(error: Exception) -> None:
    session = ScriptedSession(error, answer(200))
    http, waits = transport(session)
    assert http.request("GET", "https://api.example/x").status_code == 200
    assert len(waits) == 1 and isinstance(error, TRANSIENT_ERRORS)


def test_a_request_that_cannot_work_is_raised_at_once() -> None:
    session = ScriptedSession(requests.exceptions.InvalidURL("no host"))
    http, waits = transport(session)
    with pytest.raises(requests.exceptions.InvalidURL):
        http.request("GET", "https://api.example/x")
    assert waits == []


# ---- when the retries run out --------------------------------------------------------------------------------


def test_the_last_answer_is_returned_once_the_retries_run_out() -> None:
    session = ScriptedSession(*(answer(503, body=f'{{"n": {n}}}'.encode()) for n in range(4)))
    http, waits = transport(session, max_retries=3)
    last = http.request("GET", "https://api.example/x")
    assert (last.status_code, last.json()) == (503, {"n": 3})
    assert len(session.sent) == 4 and len(waits) == 3


def test_a_connection_failure_on_the_last_attempt_is_raised_as_it_is() -> None:
    final = requests.ReadTimeout("still slow")
    session = ScriptedSession(requests.ConnectionError("refused"), final)
    http, _ = transport(session, max_retries=1)
    with pytest.raises(requests.ReadTimeout) as raised:
        http.request("GET", "https://api.example/x")
    assert raised.value is final


def test_a_call_may_ask_for_fewer_retries_than_the_transport_allows() -> None:
    session = ScriptedSession(answer(500), answer(500))
    http, waits = transport(session, max_retries=5)
    assert http.request("GET", "https://api.example/x", retries=1).status_code == 500
    assert len(waits) == 1


# ---- backoff -----------------------------------------------------------------------------------------------


def test_backoff_ceilings_double_per_retry_up_to_the_cap() -> None:
    assert [Backoff(base=0.5, cap=3.0).ceiling(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_full_jitter_by_default_anywhere_below_the_ceiling() -> None:
    rng = random.Random(1)
    delays = [Backoff(base=1.0, cap=4.0).delay(2, rng) for _ in range(500)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert min(delays) < 0.5 and max(delays) > 3.5  # spread over the whole range: clients don't retry in step


def test_a_jitter_floor_keeps_a_minimum_share_of_the_ceiling() -> None:
    rng = random.Random(1)
    assert all(2.0 <= Backoff(base=1.0, cap=4.0, floor=0.5).delay(2, rng) <= 4.0 for _ in range(500))


def test_without_retry_after_the_waits_follow_the_backoff() -> None:
    session = ScriptedSession(answer(500), requests.ConnectionError(), answer(429), answer(200))
    http, waits = transport(session, backoff=Backoff(base=1.0, cap=8.0, floor=0.5))
    http.request("GET", "https://api.example/x")
    assert len(waits) == 3
    assert all(ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(waits, (1.0, 2.0, 4.0)))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("12", 12.0),
        ("1.5", 1.5),
        (" 3 ", 3.0),
        ("-4", 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # a date already past: no wait
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


# ---- a system's own signals ---------------------------------------------------------------------------------


def test_a_systems_own_try_again_signal_in_an_answer_is_retried_like_a_429() -> None:
    session = ScriptedSession(answer(200, body=b'{"error": "busy"}'), answer(200, body=b'{"ok": true}'))

    def busy(response: requests.Response) -> None:
        if response.json().get("error") == "busy":
            raise TryAgain("store busy", retry_after=2.0)

    http, waits = transport(session)
    assert http.request("GET", "https://api.example/x", on_answer=busy).json() == {"ok": True}
    assert waits == [2.0]


def test_a_try_again_signal_still_there_after_the_retries_hands_back_the_last_answer() -> None:
    session = ScriptedSession(answer(200, body=b'{"error": "busy"}'), answer(200, body=b'{"error": "busy"}'))

    def busy(response: requests.Response) -> None:
        raise TryAgain("store busy")

    http, _ = transport(session, max_retries=1)
    assert http.request("GET", "https://api.example/x", on_answer=busy).json() == {"error": "busy"}


def test_a_systems_own_error_raised_on_an_answer_stops_the_call_without_a_retry() -> None:
    session = ScriptedSession(answer(503, body=b'{"code": "NO_PERMISSION"}'), answer(200))

    class NoPermission(Exception):
        pass

    def check(response: requests.Response) -> None:
        if response.json().get("code") == "NO_PERMISSION":
            raise NoPermission()

    http, waits = transport(session)
    with pytest.raises(NoPermission):
        http.request("GET", "https://api.example/x", on_answer=check)
    assert waits == [] and len(session.sent) == 1


def test_renewed_credentials_send_the_request_again_once_and_not_as_a_retry() -> None:
    session = ScriptedSession(answer(401), answer(401), answer(200))
    renewals: list[int] = []

    def renew(response: requests.Response) -> bool:
        renewals.append(response.status_code)
        return response.status_code == 401

    http, waits = transport(session)
    assert http.request("GET", "https://api.example/x", renew_auth=renew).status_code == 401
    assert renewals == [401] and waits == [] and len(session.sent) == 2  # renewed once; the second 401 is final


def test_url_and_auth_functions_are_asked_again_before_every_attempt() -> None:
    session = ScriptedSession(answer(500), answer(200))
    tokens = iter(["first", "second"])

    class Token(AuthBase):
        def __init__(self, value: str) -> None:
            self.value = value

        def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
            return request

    hosts = iter(["https://a.example", "https://b.example"])
    http, _ = transport(session)
    http.request("GET", lambda: next(hosts) + "/x", auth=lambda: Token(next(tokens)))
    assert [(s["url"], s["auth"].value) for s in session.sent] == [
        ("https://a.example/x", "first"),
        ("https://b.example/x", "second"),
    ]


def test_an_auth_object_is_sent_as_it_is() -> None:
    class Token(AuthBase):
        def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
            return request

    token, session = Token(), ScriptedSession(answer(200))
    transport(session)[0].request("GET", "https://api.example/x", auth=token)
    assert session.sent[0]["auth"] is token


def test_every_answer_and_failure_is_seen_and_every_retry_reported() -> None:
    session = ScriptedSession(requests.ConnectionError(), answer(500), answer(200))
    seen: list[Any] = []
    retries: list[tuple[str, int, float]] = []
    http, waits = transport(session, on_retry=lambda failure, n, delay: retries.append((str(failure), n, delay)))
    http.request(
        "GET",
        "https://api.example/x",
        on_answer=lambda r: seen.append(r.status_code),
        on_failure=lambda e: seen.append(type(e).__name__),
    )
    assert seen == ["ConnectionError", 500, 200]
    assert [(reason, n) for reason, n, _ in retries] == [("connection failed (ConnectionError)", 0), ("HTTP 500", 1)]
    assert [delay for *_, delay in retries] == waits
    assert http.responses == 2  # answers received; the failed connection is none


# ---- keep_trying: any step, by retries or by a time budget --------------------------------------------------


def test_keep_trying_retries_a_step_that_raises_its_temporary_error() -> None:
    answers = iter([LookupError("not yet"), "done"])

    def step() -> str:
        result = next(answers)
        if isinstance(result, Exception):
            raise result
        return result

    http, waits = transport(ScriptedSession())
    assert http.keep_trying(step, temporary=LookupError) == "done"
    assert len(waits) == 1


def test_keep_trying_raises_the_last_error_once_the_retries_run_out() -> None:
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise TryAgain(f"attempt {len(calls)}")

    http, waits = transport(ScriptedSession())
    with pytest.raises(TryAgain, match="attempt 3"):
        http.keep_trying(step, retries=2, backoff=Backoff(base=0.2, cap=1.0, floor=0.5))
    assert len(waits) == 2 and 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4


def test_keep_trying_within_a_budget_gives_up_before_a_wait_would_end_past_it() -> None:
    clock = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    class Throttled(Exception):
        retry_after = 4.0

    def step() -> None:
        raise Throttled()

    http = RetryingTransport("test", sleep=sleep, clock=lambda: clock[0])
    with pytest.raises(Throttled):
        http.keep_trying(step, temporary=Throttled, budget=10.0, wait=lambda error, _: error.retry_after)
    assert waits == [4.0, 4.0]  # a third wait would end at 12 s, past the 10 s budget


def test_an_error_that_is_not_temporary_goes_straight_through_keep_trying() -> None:
    http, waits = transport(ScriptedSession())
    with pytest.raises(ValueError):
        http.keep_trying(lambda: int("x"))
    assert waits == []


# ---- the session ------------------------------------------------------------------------------------------


def test_the_plain_session_asks_for_json_with_no_basic_auth_and_no_extra_as_a_header() -> None:
    extras = {
        "refresh_token": "1000.secret",
        "X-Leak": "v",
        "verify": False,
        "proxies": {"https": "http://proxy:3128"},
        "max_redirects": 3,
    }
    session = plain_session({"X-Mine": "1"}, options=extras)
    prepared = session.prepare_request(requests.Request("GET", "https://api.example/x"))
    assert session.auth is None and prepared.headers["Accept"] == "application/json"
    assert prepared.headers["X-Mine"] == "1"
    assert not {"refresh_token", "x-leak", "verify", "proxies"} & {h.lower() for h in prepared.headers}
    assert "1000.secret" not in str(prepared.headers)
    assert (session.verify, session.proxies, session.max_redirects) == (False, {"https": "http://proxy:3128"}, 3)


def test_each_thread_gets_its_own_session() -> None:
    made: list[requests.Session] = []

    def factory() -> requests.Session:
        made.append(requests.Session())
        return made[-1]

    http = RetryingTransport("test", session_factory=factory)
    here = http.session
    other: list[requests.Session] = []
    thread = threading.Thread(target=lambda: other.append(http.session))
    thread.start()
    thread.join()
    assert http.session is here and other[0] is not here and len(made) == 2


def test_max_in_flight_caps_the_requests_sent_at_once() -> None:
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    class SlowSession:
        def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.02)
            with lock:
                state["now"] -= 1
            return answer(200)

    http = RetryingTransport("test", session_factory=SlowSession, max_in_flight=2)
    threads = [threading.Thread(target=http.request, args=("GET", "https://api.example/x")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["peak"] == 2 and http.responses == 8
