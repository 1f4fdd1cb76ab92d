"""The shipped deploy/nginx.conf in front of the real app under gunicorn: what it caches,
what it never caches or logs, and that no visitor is ever answered with another's secrets."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from bench import nginx
from tests.mailbox import free_port
from tests.servers import start_gunicorn, stop

#: what nginx answers from its cache, fresh or stale
FROM_CACHE = {"HIT", "STALE", "UPDATING", "REVALIDATED"}
HIDDEN = re.compile(r"<input[^>]*\btype=\"hidden\"[^>]*>")


@dataclass
class Answer:
    """One HTTP answer: status, headers (lower-case names, repeated ones joined), body."""

    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: str

    @property
    def cache(self) -> str:
        """nginx's cache status for this answer, or "" where the cache was off."""
        return self.headers.get("x-cache-status", "")


@dataclass
class Visitor:
    """A browser of one person: its own cookies, nothing else shared."""

    port: int
    jar: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **extra: str
    ) -> Answer:
        """Send one request through nginx, keeping cookies and every body and header seen."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Host": "undersigned.test", **extra}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
            cookies = response.headers.get_all("Set-Cookie") or []
            answer = Answer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, cookies, text
            )
        finally:
            connection.close()
        for cookie in cookies:
            name, _, value = cookie.split(";", 1)[0].partition("=")
            self.jar[name.strip()] = value.strip()
        self.seen.append(f"{answer.headers}\n{answer.body}")
        return answer

    def get(self, path: str) -> Answer:
        """GET a page."""
        return self.request("GET", path)

    def hidden_fields(self, path: str) -> dict[str, str]:
        """GET a page with a form; its hidden fields (the CSRF token among them)."""
        answer = self.get(path)
        assert answer.status == 200, answer.body[:500]
        fields = {}
        for tag in HIDDEN.findall(answer.body):
            name = re.search(r'\bname="([^"]*)"', tag)
            value = re.search(r'\bvalue="([^"]*)"', tag)
            if name:
                fields[name.group(1)] = value.group(1) if value else ""
        assert "csrf_token" in fields, f"no CSRF token on {path}"
        return fields


@dataclass
class Edge:
    """gunicorn with production settings and nginx from deploy/nginx.conf in front."""

    port: int
    run_dir: Path
    slug: str

    def visitor(self) -> Visitor:
        """A new browser."""
        return Visitor(self.port)

    def stored(self) -> str:
        """Everything nginx keeps on disk: its cache files and its access log."""
        parts = [self.access_log()]
        for path in (self.run_dir / "cache").rglob("*"):
            if path.is_file():
                parts.append(path.read_bytes().decode("utf-8", "replace"))
        return "\n".join(parts)

    def access_log(self) -> str:
        """nginx's access log so far."""
        log = self.run_dir / "access.log"
        return log.read_text() if log.exists() else ""


def require_nginx() -> None:
    """Skip without nginx on a laptop; in CI (or with REQUIRE_BROWSER=1) fail instead."""
    if nginx.installed():
        return
    reason = f"nginx is not installed at {nginx.NGINX} (apt-get install nginx-light)"
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def edge(site, database_url: str, tmp_path: Path) -> Iterator[Edge]:
    """A published letter, the app under gunicorn (production settings, limits on, behind one
    proxy) and nginx in front of it."""
    require_nginx()
    slug = site.letter()
    app, base = start_gunicorn(
        database_url,
        workers=2,
        TRUSTED_PROXIES="1",
        RATELIMIT_ENABLED="1",
        PUBLIC_URL="http://undersigned.test",
        SMTP_PORT=str(site.mailbox.port),
    )
    port = free_port()
    run_dir = tmp_path / "nginx"
    proxy = subprocess.Popen(
        nginx.command(run_dir, port, urlsplit(base).netloc),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                assert proxy.poll() is None, proxy.stderr.read().decode()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield Edge(port, run_dir, slug)
    finally:
        nginx_errors = stop(proxy)
        app_errors = stop(app)
    assert "Traceback" not in app_errors
    assert "[emerg]" not in nginx_errors


def public_paths(slug: str) -> list[str]:
    """Every public page an anonymous reader may fetch."""
    return [
        "/",
        f"/p/{slug}",
        f"/p/{slug}/history",
        f"/p/{slug}/chart.svg",
        f"/p/{slug}/history.csv",
        f"/p/{slug}/badge.svg",
        f"/p/{slug}/widget",
        "/feed.atom",
        "/api/v1/petitions",
        f"/api/v1/petitions/{slug}",
        f"/api/v1/petitions/{slug}/history",
    ]


def test_the_shipped_file_is_run_with_only_its_local_values_changed() -> None:
    """The test and the bench run deploy/nginx.conf itself: only `# local` lines differ."""
    shipped = nginx.CONF.read_text().splitlines()
    values = {
        "server": "127.0.0.1:1",
        "proxy_cache_path": "/tmp/c",
        "listen": "127.0.0.1:2",
        "root": "/tmp/r",
        "access_log": "/tmp/a.log",
        "error_log": "/tmp/e.log",
    }
    rendered = nginx.render(values).splitlines()
    changed = [old for old, new in zip(shipped, rendered, strict=True) if old != new]
    assert changed == [line for line in shipped if re.search(r";\s+# local", line)]
    assert len(changed) >= 5


def test_public_pages_and_the_api_are_answered_from_the_cache(edge: Edge) -> None:
    """Every public page is stored and served again; of a burst of readers of a page nobody
    has read yet, one reaches the app and the others wait for its answer (proxy_cache_lock)."""
    burst = f"/p/{edge.slug}/history"
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: edge.visitor().get(burst), range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert sum(a.cache not in FROM_CACHE for a in answers) == 1
    assert edge.access_log().count("cache=MISS") == 1

    reader = edge.visitor()
    for path in public_paths(edge.slug):
        first = reader.get(path)
        assert first.status == 200, path
        assert first.cookies == [], f"{path} set a cookie for an anonymous reader"
        assert first.headers["cache-control"].startswith("public"), path
        assert "etag" in first.headers, path
        again = edge.visitor().get(path)
        assert again.cache in FROM_CACHE, f"{path} was not answered from the cache"
        assert again.body == first.body
    assert reader.jar == {}


def test_sessions_tokens_and_posts_are_never_cached_or_logged(edge: Edge, site) -> None:
    signer = edge.visitor()
    sign = f"/p/{edge.slug}/sign"
    fields = signer.hidden_fields(sign)
    first_form = signer.seen[-1]
    assert "session" in signer.jar
    assert signer.get(sign).cache not in FROM_CACHE
    # A page any anonymous reader would get from the cache is fetched afresh with a session.
    for path in (f"/p/{edge.slug}", "/"):
        edge.visitor().get(path)
        assert signer.get(path).cache == "BYPASS"
    remembered = edge.visitor()
    remembered.jar["remember_token"] = "1|x"
    assert remembered.get("/").cache == "BYPASS"

    email = "sam@example.com"
    form = {**fields, "name": "Sam", "email": email, "affiliation": "current"}
    form.setdefault("display", "counted")
    for _ in range(2):
        answer = signer.request("POST", sign, form)
        assert answer.status < 500
        assert answer.cache not in FROM_CACHE
    site.deliver()
    link = urlsplit(site.mailbox.last_to(email).link()).path
    token = link.rsplit("/", 1)[1]
    clicker = edge.visitor()
    for _ in range(2):
        page = clicker.get(link)
        assert page.status == 200
        assert "x-cache-status" not in page.headers
    confirm_fields = clicker.hidden_fields(link)
    confirmed = clicker.request("POST", link, confirm_fields)
    assert confirmed.status == 200
    assert "x-cache-status" not in confirmed.headers
    account_link = "/account/reset/" + "A" * 40
    account_page = clicker.get(account_link)
    assert account_page.status < 500
    assert "x-cache-status" not in account_page.headers

    stored = edge.stored()
    assert token not in stored
    assert signer.jar["session"] not in stored
    assert fields["csrf_token"] not in stored
    assert first_form not in stored
    log = edge.access_log()
    assert f'"GET /p/{edge.slug}"' in log  # it does log, but never these
    for prefix in ("/c/", "/w/", "/confirm/", "/account/", "/r/"):
        assert f" {prefix}" not in log
    assert "127.0.0.1" not in log


def test_no_visitor_is_answered_with_anothers_cookie_or_token(edge: Edge, site) -> None:
    signer = edge.visitor()
    sign = f"/p/{edge.slug}/sign"
    fields = signer.hidden_fields(sign)
    email = "ana@example.com"
    form = {**fields, "name": "Ana", "email": email, "affiliation": "current"}
    form.setdefault("display", "named")
    assert signer.request("POST", sign, form).status < 500
    site.deliver()
    link = urlsplit(site.mailbox.last_to(email).link()).path
    signer.get(link)
    for path in public_paths(edge.slug):
        signer.get(path)  # with a session: straight from the app, never stored
    secrets = [signer.jar["session"], fields["csrf_token"], link.rsplit("/", 1)[1]]

    others = [edge.visitor() for _ in range(3)]
    for other in others:
        for path in [*public_paths(edge.slug), sign, f"/p/{edge.slug}"]:
            other.get(path)
    for other in others:
        assert other.jar.get("session") not in secrets
        for seen in other.seen:
            for secret in secrets:
                assert secret not in seen


def test_a_client_cannot_choose_its_address_for_the_limits(edge: Edge) -> None:
    """nginx appends the address it sees to X-Forwarded-For and the app trusts one proxy, so
    a client that sends its own X-Forwarded-For still spends its own per-address budget."""
    signer = edge.visitor()
    sign = f"/p/{edge.slug}/sign"
    fields = signer.hidden_fields(sign)
    statuses = []
    for number in range(40):
        form = {**fields, "name": "Sam", "email": f"s{number}@example.com"}
        form.update(affiliation="current", display="counted")
        spoofed = f"10.9.{number}.1"
        statuses.append(signer.request("POST", sign, form, **{"X-Forwarded-For": spoofed}).status)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, statuses
    assert all(status < 400 for status in statuses[:-1]), statuses
