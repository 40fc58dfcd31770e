"""Web sessions and page hardening against a real ``orchestrion serve`` process on loopback.

Each test signs in as a person does (GET /signin for the form and its pre-session cookie, then
POST the credential) with a cookie-keeping HTTP client, then revokes, signs out or attacks, and
checks what the server did through its API. Lifetime and idle expiry need a clock and are tested
with a fixed one in tests/test_web_units.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from launcher import Server, cli, serve
from orchestrion.access.keys import create_key
from orchestrion.config import load_settings
from orchestrion.store import Store, utcnow
from test_web import _seed, _seed_carol


@dataclass
class Site:
    server: Server
    admin_key: str

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, key: str | None = None, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def user_key(self, user: str) -> tuple[str, str]:
        """A new ``user`` API key for ``user``: (key, key_id)."""
        made = self.api("POST", "/v1/keys", json={"role": "user", "user_id": user})
        assert made.status_code == 201, made.text
        return made.json()["key"], made.json()["key_id"]

    def link(self, user: str) -> tuple[str, str]:
        """A sign-in link's token and id, from `orchestrion users link USER` run as a real command."""
        out = cli(self.server.home, "users", "link", user, "--base-url", self.url)
        assert out.returncode == 0, out.stderr
        link = out.stdout.strip().splitlines()[-1]
        assert link.startswith(self.url + "/signin#token=")
        link_id = re.search(r"link id (\w+)", out.stderr)
        assert link_id is not None, out.stderr
        return link.partition("#token=")[2], link_id[1]


def _seeded_home(home: Path, *, toml: str = "") -> str:
    """A home with the web tests' users and deliverables (carol's cart awaiting approval); the admin key."""
    (home / "orchestrion.toml").write_text("scheduler = false\n" + toml)
    settings = load_settings({"ORCHESTRION_HOME": str(home)})
    with Store.open(settings.database_path) as store:
        admin = create_key(store.con, "admin").key
        now = utcnow()
        _seed(store, now)
        _seed_carol(store, settings, now)
    return admin


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("sessions")
    admin = _seeded_home(home)
    with serve(home) as server:
        yield Site(server, admin)


class Browser:
    """A cookie-keeping client without JavaScript, as a person's browser (redirects not followed)."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str], **kwargs: object) -> httpx.Response:
        return self.client.post(path, data=data, **kwargs)  # type: ignore[arg-type]

    def sign_in(self, credential: str, **kwargs: object) -> httpx.Response:
        page = self.get("/signin")
        token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token is not None
        return self.post("/signin", {"signin_token": token[1], "credential": credential}, **kwargs)

    def form_token(self, path: str = "/") -> str:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code)
        found = re.search(r'name="form_token" value="([^"]+)"', page.text)
        assert found is not None
        return found[1]

    @property
    def session_cookie(self) -> str | None:
        return self.client.cookies.get("orchestrion_session")


def _to_signin(response: httpx.Response) -> bool:
    return response.status_code == 303 and response.headers["location"] == "/signin"


def test_revoking_a_key_ends_its_session_and_its_approval_places_no_order(site: Site) -> None:
    key, key_id = site.user_key("carol")
    with Browser(site.url) as carol:
        signed = carol.sign_in(key)
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        token = carol.form_token("/approvals")
        assert "d_carolc1" in carol.get("/approvals").text
        assert site.api("DELETE", f"/v1/keys/{key_id}").status_code == 200
        assert _to_signin(carol.get("/approvals"))
        assert _to_signin(carol.get("/"))
        approve = carol.post("/approvals/d_carolc1", {"form_token": token, "decision": "approve"})
        assert _to_signin(approve)
    # nothing was decided and no order was placed
    record = site.api("GET", "/v1/deliverables/d_carolc1").json()
    assert [(a["status"], a["decided_by"]) for a in record["actions"]] == [("waiting", None)]
    orders = site.server.home / "data" / "outbox" / "orders"
    assert not orders.exists() or list(orders.iterdir()) == []
    # and the revoked key cannot sign in again
    with Browser(site.url) as again:
        assert again.sign_in(key).status_code == 401 and again.session_cookie is None


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(site: Site) -> None:
    token, _ = site.link("alice")
    with Browser(site.url) as alice:
        assert alice.sign_in(token).headers["location"] == "/"
        saved = alice.session_cookie
        assert saved is not None
        form = alice.form_token()
        # signing out needs the form token: another site cannot sign a person out
        assert alice.post("/signout", {}).status_code == 403
        assert alice.post("/signout", {"form_token": "☃ forged"}).status_code == 403
        assert alice.get("/").status_code == 200
        out = alice.post("/signout", {"form_token": form})
        assert _to_signin(out) and 'orchestrion_session=""' in out.headers["set-cookie"]
    with Browser(site.url) as thief:
        thief.client.cookies.set("orchestrion_session", saved)
        assert _to_signin(thief.get("/"))
        assert _to_signin(thief.post("/deliverables/d_alice03/thumbs", {"form_token": form, "thumb": "up"}))
        # without a live session a sign-out post changes nothing, cookies included
        assert "set-cookie" not in thief.post("/signout", {"form_token": form}).headers
        # a link signs in once
        assert thief.sign_in(token).status_code == 401 and thief.session_cookie == saved
    feedback = site.api("GET", "/v1/deliverables/d_alice03").json()
    assert feedback["user_id"] == "alice"


def test_a_revoked_admin_keys_session_cannot_open_admin(site: Site) -> None:
    made = site.api("POST", "/v1/keys", json={"role": "admin"}).json()
    with Browser(site.url) as operator:
        assert operator.sign_in(made["key"]).headers["location"] == "/admin"
        assert operator.get("/admin").status_code == 200
        assert operator.get("/?user=alice").status_code == 200
        assert site.api("DELETE", f"/v1/keys/{made['key_id']}").status_code == 200
        assert _to_signin(operator.get("/admin"))
        assert _to_signin(operator.get("/?user=alice"))
        assert _to_signin(operator.get("/deliverables/d_alice01"))


def test_sign_out_everywhere_and_an_operator_can_end_a_users_sessions_and_links(site: Site) -> None:
    first, _ = site.link("bob")
    second, _ = site.link("bob")
    unused, _ = site.link("bob")
    with Browser(site.url) as laptop, Browser(site.url) as phone:
        laptop.sign_in(first)
        phone.sign_in(second)
        assert laptop.get("/").status_code == phone.get("/").status_code == 200
        settings = laptop.get("/settings")
        assert "Sign out everywhere" in settings.text
        everywhere = laptop.post("/signout", {"form_token": laptop.form_token("/settings"), "everywhere": "1"})
        assert _to_signin(everywhere)
        assert _to_signin(phone.get("/")) and _to_signin(laptop.get("/"))
    with Browser(site.url) as later:
        assert later.sign_in(unused).status_code == 401  # links made before signing out everywhere
        fresh, link_id = site.link("bob")
        assert later.sign_in(fresh).status_code == 303 and later.get("/").status_code == 200
        # a mistyped link id is not "revoked" (it answered 200 and the real link went on working)
        for typo in (link_id + "x", link_id[:-1], link_id.upper()):
            wrong = site.api("DELETE", f"/v1/signin-links/{typo}")
            assert wrong.status_code == 404 and "16 hexadecimal characters" in wrong.json()["detail"], wrong.text
        assert later.get("/").status_code == 200
        # the operator revokes the link it came from: the session ends
        revoked = site.api("DELETE", f"/v1/signin-links/{link_id}")
        assert revoked.status_code == 200 and revoked.json()["sessions_ended"] == 1
        assert _to_signin(later.get("/"))
    # removing a person from the web page: their sessions end, whatever they signed in with; an id
    # with a slash (ingestion and keys take them) is signed out the same way
    keys = {user: site.user_key(user)[0] for user in ("bob", "shop/42")}
    for user, key in keys.items():
        with Browser(site.url) as keyed:
            keyed.sign_in(key)
            assert keyed.get("/").status_code == 200
            ended = site.api("DELETE", f"/v1/users/{user}/sessions")
            assert ended.status_code == 200 and ended.json() == {"user_id": user, "sessions_ended": 1}
            assert _to_signin(keyed.get("/"))
    assert site.api("DELETE", "/v1/users/bob/sessions", key=keys["bob"]).status_code == 403  # admin only


def test_a_cross_site_sign_in_post_is_refused(site: Site) -> None:
    """Login CSRF: another site posting its own credential into a victim's browser."""
    token, _ = site.link("alice")
    with Browser(site.url) as victim:
        # no pre-session cookie, no form token: what a cross-site form post carries
        bare = victim.post("/signin", {"credential": token}, headers={"Origin": "https://evil.example"})
        assert bare.status_code == 403 and victim.session_cookie is None
        # the attacker's own form token does not match the victim's pre-session cookie
        with Browser(site.url) as attacker:
            page = attacker.get("/signin").text
            theirs = re.search(r'name="signin_token" value="([^"]+)"', page)
            assert theirs is not None
        victim.get("/signin")
        forged = victim.post("/signin", {"credential": token, "signin_token": theirs[1]})
        assert forged.status_code == 403 and victim.session_cookie is None
        assert victim.post("/signin", {"credential": token, "signin_token": "é"}).status_code == 403
        # the link was not used up by the refused posts
        assert victim.sign_in(token).status_code == 303 and victim.session_cookie is not None
    cookie = httpx.get(site.url + "/signin", timeout=30).headers["set-cookie"]
    assert "orchestrion_signin=" in cookie and "SameSite=strict" in cookie and "HttpOnly" in cookie


def test_credentials_in_a_url_never_sign_in(site: Site) -> None:
    token, _ = site.link("alice")
    with Browser(site.url) as browser:
        for credential in (site.admin_key, token):
            page = browser.get("/signin", params={"token": credential})
            assert page.status_code == 400 and "never taken from the address" in page.text
            assert browser.session_cookie is None and credential not in page.text
        assert _to_signin(browser.get("/admin"))
        assert browser.sign_in(token).status_code == 303  # still unused


def test_every_page_carries_the_security_headers_and_no_inline_code(site: Site) -> None:
    with Browser(site.url) as alice:
        alice.sign_in(site.link("alice")[0])
        pages = {path: alice.get(path) for path in ("/", "/approvals", "/settings", "/deliverables/d_alice01",
                                                    "/deliverables/nope", "/?date=0", "/static/style.css",
                                                    "/static/signin.js")}
    with Browser(site.url) as operator:
        operator.sign_in(site.admin_key)
        pages["/admin"] = operator.get("/admin")
    pages["/signin"] = httpx.get(site.url + "/signin", timeout=30)
    assert {p: r.status_code for p, r in pages.items()} == {
        "/": 200, "/approvals": 200, "/settings": 200, "/deliverables/d_alice01": 200, "/deliverables/nope": 404,
        "/?date=0": 400, "/static/style.css": 200, "/static/signin.js": 200, "/admin": 200, "/signin": 200}
    for path, response in pages.items():
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers.get("x-content-type-options") == "nosniff", path
        assert response.headers.get("referrer-policy") == "no-referrer", path
        assert response.headers.get("x-frame-options") == "DENY", path
        if response.headers["content-type"].startswith("text/html"):
            assert response.headers.get("cache-control") == "no-store", path
            # CSP forbids inline code: every script is a file, no style attribute or element
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text), path
            assert not re.search(r"<style|\sstyle=|\son[a-z]+=", response.text), path
    api = httpx.get(site.url + "/v1/health", timeout=30)
    assert api.headers.get("x-content-type-options") == "nosniff"


def test_cookies_are_secure_behind_https_from_a_trusted_proxy_only(site: Site, tmp_path: Path) -> None:
    https = {"X-Forwarded-Proto": "https"}
    with Browser(site.url) as direct:  # the default trusts no proxy: the header is ignored
        signed = direct.sign_in(site.admin_key, headers=https)
        assert signed.status_code == 303 and "secure" not in signed.headers["set-cookie"].lower()
    admin = _seeded_home(tmp_path, toml='web_trusted_proxies = ["127.0.0.1/32"]\n')
    with serve(tmp_path) as proxied:
        with Browser(proxied.url) as plain:
            signed = plain.sign_in(admin)
            assert signed.status_code == 303 and "secure" not in signed.headers["set-cookie"].lower()
        with Browser(proxied.url) as behind:
            form = behind.client.get("/signin", headers=https)
            assert "; secure" in form.headers["set-cookie"].lower()
            token = re.search(r'name="signin_token" value="([^"]+)"', form.text)
            assert token is not None
            # the Secure pre-session cookie goes back as a browser behind the https proxy sends it
            seed = re.search(r"orchestrion_signin=([^;]+)", form.headers["set-cookie"])
            assert seed is not None
            signed = httpx.post(proxied.url + "/signin", data={"signin_token": token[1], "credential": admin},
                                headers={**https, "Cookie": f"orchestrion_signin={seed[1]}"}, timeout=30)
            assert signed.status_code == 303
            assert "; secure" in signed.headers["set-cookie"].lower()
            assert "httponly" in signed.headers["set-cookie"].lower()


def test_the_api_answers_404_for_another_users_deliverable(site: Site) -> None:
    key, _ = site.user_key("bob")
    mine = site.api("GET", "/v1/deliverables/d_bob0001", key=key)
    assert mine.status_code == 200
    theirs = site.api("GET", "/v1/deliverables/d_alice01", key=key)
    unknown = site.api("GET", "/v1/deliverables/d_nobody", key=key)
    assert theirs.status_code == unknown.status_code == 404
    # word for word the answer for an id that does not exist: nothing tells them apart
    assert theirs.json()["detail"].replace("d_alice01", "ID") == unknown.json()["detail"].replace("d_nobody", "ID")
    assert {k: v for k, v in theirs.json().items() if k != "detail"} == {
        k: v for k, v in unknown.json().items() if k != "detail"}
    decided = site.api("POST", "/v1/deliverables/d_carolc1/reject", key=key)
    assert decided.status_code == 404
    record = site.api("GET", "/v1/deliverables/d_carolc1").json()
    assert [a["status"] for a in record["actions"]] == ["waiting"]


def test_bad_fields_are_4xx_naming_the_field(site: Site) -> None:
    with Browser(site.url) as carol:
        carol.sign_in(site.link("carol")[0])
        token = carol.form_token("/settings")
        zone = carol.post("/settings", {"form_token": token, "timezone": "A" * 5_000})
        assert zone.status_code == 400 and "time zone" in zone.text
        # past the page's form limit (64 KiB) the whole form is refused, saying so
        huge = carol.post("/settings", {"form_token": token, "timezone": "A" * 70_000})
        assert huge.status_code == 413 and "nothing was changed" in huge.text
        for path in ("/deliverables/d_carolc1/thumbs", "/approvals/d_carolc1"):
            answer = carol.post(path, {"form_token": "tökén", "thumb": "up", "decision": "approve"})
            assert answer.status_code == 403, path
        day = carol.get("/", params={"date": "0"})
        assert day.status_code == 400 and "date" in day.text
    feed = site.api("GET", "/v1/users/alice/feed", params={"date": "0"})
    assert feed.status_code == 422 and "date" in feed.json()["detail"]
    assert site.api("GET", "/v1/users/alice/feed", params={"date": "20240102"}).status_code == 422
    assert site.api("GET", "/v1/users/alice/feed", params={"date": "2024-01-02"}).status_code == 200
    runs = site.api("GET", "/v1/runs", params={"since": "0"})
    assert runs.status_code == 422 and "since" in runs.json()["detail"]
