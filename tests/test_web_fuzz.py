"""Fuzzing the web pages with hypothesis against one real ``orchestrion serve`` process: 0 × 5xx.

Every route gets a few hundred generated requests: forms with known and made-up field names,
repeated fields, any Unicode (non-ASCII form tokens, NULs, 70,000-character values), raw bodies
that are not valid UTF-8 or urlencoding, and query strings the same way. The signed-in routes are
fuzzed inside a real session (a user's, and the admin's for ``/admin``), half the time with the
session's real form token so that the validation behind the CSRF check is reached too. A request
that signs the session out is followed by a new sign-in. Runs are derandomized (the same examples
every time) and the whole file is bounded to well under a minute on one core.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher import serve
from test_web_sessions import Site, _seeded_home

EXAMPLES = int(os.environ.get("ORCHESTRION_WEB_FUZZ_EXAMPLES", "200"))
"""Examples per fuzzed route and method (11 of them; the feed, admin and sign-out examples send two
requests, a user's and the admin's): 2,800 requests, each answered by the real server, in about
75 s on the shared machine. ORCHESTRION_WEB_FUZZ_EXAMPLES runs more or fewer."""

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATUSES: Counter[int] = Counter()
"""Every status answered by the fuzzed routes, for the final check (and docs/security.md)."""

FIELDS = (
    "form_token", "thumb", "item_id", "next", "decision", "timezone", "tier_order", "tier_webhook", "tier_outbox",
    "max_order_amount", "max_monthly_spend", "quiet_start", "quiet_end", "excluded_templates", "paused", "restore",
    "credential", "signin_token", "everywhere", "date", "user", "done", "saved", "token",
)
INTERESTING = (
    "", "0", "1", "-1", "on", "up", "down", "approve", "reject", "cancel", "auto", "notify", "suggest", "UTC",
    "Europe/Paris", "Mars/Olympus", "../../etc/passwd", "25:99", "07:30", "nan", "inf", "-inf", "1e308", "1e-308",
    "2024-02-29", "2024-02-30", "20240102", "2024-W01-1", "٢٠٢٤-٠١-٠٢", "d_carolc1", "d_alice01", "d_bob0001",
    "t1", "p1", "playlist", "reorder", "tökén", "\x00", "\r\n", "\u202e", "//evil.example/", "/\\evil",
    "A" * 70_000, "é" * 5_000, "orc_x_y", "<script>alert(1)</script>",
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
values = st.one_of(st.sampled_from(INTERESTING), texts)
names = st.one_of(st.sampled_from(FIELDS), texts)
pairs = st.lists(st.tuples(names, values), max_size=8)
"""Form fields; a URL is shorter (httpx refuses one over 64 kB), so query values get 1,000 characters at most."""
queries = st.lists(st.tuples(names, st.one_of(st.sampled_from([v[:1_000] for v in INTERESTING]), texts)), max_size=8)
ids = st.one_of(st.sampled_from(("d_carolc1", "d_carolw", "d_alice01", "d_bob0001", "nope", "", "..", "%00")),
                texts)
raw_bodies = st.one_of(st.binary(max_size=300), st.sampled_from((b"%", b"%ZZ=1", b"a=%FF%FE", b"=&=&&", b"\xff\xfe")))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("fuzz")
    admin = _seeded_home(home)
    with serve(home) as server:
        yield Site(server, admin)
        assert "Traceback" not in server.log, server.log[-5_000:]


class Person:
    """A signed-in client that signs in again whenever a fuzzed request ended its session."""

    def __init__(self, url: str, credential: str, home_page: str) -> None:
        self.client = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
        self.credential = credential
        self.home_page = home_page
        self.form_token = ""
        self.sign_in()

    def sign_in(self) -> None:
        self.client.cookies.clear()
        page = self.client.get("/signin")
        token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
        assert token is not None
        signed = self.client.post("/signin", data={"signin_token": token[1], "credential": self.credential})
        assert signed.status_code == 303, signed.text
        found = re.search(r'name="form_token" value="([^"]+)"', self.client.get(self.home_page).text)
        assert found is not None
        self.form_token = found[1]

    def send(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
             body: bytes | None = None) -> httpx.Response:
        url = path + ("?" + urlencode(query) if query else "")
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        response = self.client.request(method, url, content=body, headers=headers)
        STATUSES[response.status_code] += 1
        assert response.status_code < 500, (method, url, body[:300] if body else None, response.text[:500])
        if (response.status_code == 303 and response.headers["location"] == "/signin") or (
            response.status_code == 401 and response.headers.get("hx-redirect") == "/signin"
        ):
            self.sign_in()
        return response

    def form(self, fields: list[tuple[str, str]], use_token: bool) -> bytes:
        if use_token:
            fields = [("form_token", self.form_token), *fields]
        return urlencode(fields).encode()


@pytest.fixture(scope="module")
def carol(site: Site) -> Iterator[Person]:
    key, _ = site.user_key("carol")
    person = Person(site.url, key, "/settings")
    yield person
    person.client.close()


@pytest.fixture(scope="module")
def operator(site: Site) -> Iterator[Person]:
    person = Person(site.url, site.admin_key, "/admin")
    yield person
    person.client.close()


def _path(template: str, deliverable_id: str) -> str:
    return template.format(quote(deliverable_id, safe=""))


@FUZZ
@given(query=queries)
def test_fuzz_feed_query(carol: Person, operator: Person, query: list[tuple[str, str]]) -> None:
    carol.send("GET", "/", query=query)
    operator.send("GET", "/", query=query)


@FUZZ
@given(deliverable_id=ids, query=queries)
def test_fuzz_deliverable_page(carol: Person, deliverable_id: str, query: list[tuple[str, str]]) -> None:
    carol.send("GET", _path("/deliverables/{}", deliverable_id), query=query)


@FUZZ
@given(deliverable_id=ids, fields=pairs, use_token=st.booleans(), raw=st.one_of(st.none(), raw_bodies),
       htmx=st.booleans())
def test_fuzz_thumbs(carol: Person, deliverable_id: str, fields: list[tuple[str, str]], use_token: bool,
                     raw: bytes | None, htmx: bool) -> None:
    body = raw if raw is not None else carol.form(fields, use_token)
    if htmx:
        carol.client.headers["HX-Request"] = "true"
    try:
        carol.send("POST", _path("/deliverables/{}/thumbs", deliverable_id), body=body)
    finally:
        carol.client.headers.pop("HX-Request", None)


@FUZZ
@given(query=queries)
def test_fuzz_approvals_page(carol: Person, query: list[tuple[str, str]]) -> None:
    carol.send("GET", "/approvals", query=query)


@FUZZ
@given(deliverable_id=ids, fields=pairs, use_token=st.booleans(), raw=st.one_of(st.none(), raw_bodies))
def test_fuzz_approvals_decision(carol: Person, deliverable_id: str, fields: list[tuple[str, str]],
                                 use_token: bool, raw: bytes | None) -> None:
    body = raw if raw is not None else carol.form(fields, use_token)
    carol.send("POST", _path("/approvals/{}", deliverable_id), body=body)


@FUZZ
@given(query=queries)
def test_fuzz_settings_page(carol: Person, query: list[tuple[str, str]]) -> None:
    carol.send("GET", "/settings", query=query)


@FUZZ
@given(fields=pairs, use_token=st.booleans(), raw=st.one_of(st.none(), raw_bodies))
def test_fuzz_settings_form(carol: Person, fields: list[tuple[str, str]], use_token: bool,
                            raw: bytes | None) -> None:
    body = raw if raw is not None else carol.form(fields, use_token)
    carol.send("POST", "/settings", body=body)


@FUZZ
@given(query=queries)
def test_fuzz_admin_page(operator: Person, carol: Person, query: list[tuple[str, str]]) -> None:
    operator.send("GET", "/admin", query=query)
    carol.send("GET", "/admin", query=query)


@pytest.fixture(scope="module")
def stranger(site: Site) -> Iterator[httpx.Client]:
    """One client for the signed-out requests (a client per example would load the CA bundle each time)."""
    with httpx.Client(base_url=site.url, follow_redirects=False, timeout=60) as client:
        yield client


@FUZZ
@given(query=queries)
def test_fuzz_signin_page_never_signs_in(site: Site, stranger: httpx.Client, query: list[tuple[str, str]]) -> None:
    stranger.cookies.clear()
    response = stranger.get("/signin", params=[*query, ("token", site.admin_key)])
    STATUSES[response.status_code] += 1
    assert response.status_code < 500
    assert "orchestrion_session=" not in response.headers.get("set-cookie", "")


@FUZZ
@given(fields=pairs, with_seed=st.booleans(), raw=st.one_of(st.none(), raw_bodies))
def test_fuzz_signin_form(stranger: httpx.Client, fields: list[tuple[str, str]], with_seed: bool,
                          raw: bytes | None) -> None:
    stranger.cookies.clear()
    page = stranger.get("/signin")
    token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
    assert token is not None
    if not with_seed:
        stranger.cookies.clear()
    body = raw if raw is not None else urlencode([("signin_token", token[1]), *fields]).encode()
    response = stranger.post("/signin", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    STATUSES[response.status_code] += 1
    assert response.status_code < 500, (body[:300], response.text[:500])
    if response.status_code != 303:  # only a real credential signs in
        assert "orchestrion_session=" not in response.headers.get("set-cookie", "")


@FUZZ
@given(fields=pairs, use_token=st.booleans(), raw=st.one_of(st.none(), raw_bodies))
def test_fuzz_signout(carol: Person, operator: Person, fields: list[tuple[str, str]], use_token: bool,
                      raw: bytes | None) -> None:
    for person in (carol, operator):
        body = raw if raw is not None else person.form(fields, use_token)
        person.send("POST", "/signout", body=body)


def test_fuzzing_found_no_server_error(site: Site) -> None:
    """The figures for docs/security.md: requests sent, and that none answered 5xx."""
    assert sum(STATUSES.values()) >= 10 * EXAMPLES
    assert not [s for s in STATUSES if s >= 500]
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{site.server.proc.pid}/stat").read_text().rpartition(")")[2].split()
    server_cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    print(f"\nweb fuzz: {sum(STATUSES.values())} requests, statuses {dict(sorted(STATUSES.items()))}; "
          f"server CPU {server_cpu:.1f} s, this process {time.process_time():.1f} s")
