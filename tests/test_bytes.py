"""Undecodable bytes on every route, sent raw to gunicorn: the site's own 4xx pages, never a
5xx, and no token link in any log line (gunicorn's error and access logs included)."""

from __future__ import annotations

import re
import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from config import TestingConfig
from petitions.db import new_session
from petitions.models import Petition
from tests.conftest import PASSWORD, csrf_from
from tests.servers import start_gunicorn, stop

pytestmark = pytest.mark.slow

JUNK_HEADERS = (
    b'Accept-Language: \xff\r\nUser-Agent: \xff\xfe\r\nIf-None-Match: "\xff"\r\n'
    b"If-Modified-Since: \xff\r\nAccept: \xff/\xff\r\nOrigin: http://\xff\r\n"
)


def send(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes as one request; return the status, headers and body of the answer.
    The cookies it sets are joined under `cookie`, ready to send back."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin1").split("\r\n")
    fields = [(name.lower(), value) for name, _, value in (line.partition(": ") for line in lines)]
    headers = dict(fields)
    cookies = [value.partition(";")[0] for name, value in fields if name == "set-cookie"]
    headers["cookie"] = "; ".join(cookies)
    return int(status_line.split()[1]), headers, body


def request(
    method: str,
    target: bytes,
    headers: bytes = b"",
    body: bytes = b"",
    host: bytes = b"undersigned.test",
) -> bytes:
    """An HTTP/1.1 request; `headers` are whole lines, each ending in CRLF."""
    if method == "POST" and b"content-type" not in headers.lower():
        headers += b"Content-Type: application/x-www-form-urlencoded\r\n"
    length = f"Content-Length: {len(body)}\r\n".encode() if method == "POST" else b""
    return (
        method.encode() + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Connection: close\r\n" + headers + length + b"\r\n" + body
    )


def multipart(csrf: str) -> tuple[bytes, bytes]:
    """A form whose second part has an undecodable header, and whose third an undecodable value."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        + csrf.encode()
        + b'\r\n--b\r\nContent-Disposition: form-data; name="\xff"\r\n\r\nx'
        b'\r\n--b\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\xfe\r\n--b--\r\n'
    )
    return b"Content-Type: multipart/form-data; boundary=b\r\n", body


def login(port: int, email: str) -> tuple[str, str]:
    """A session cookie and CSRF token from gunicorn: anonymous, or logged in as `email`."""
    status, headers, body = send(port, request("GET", b"/login"))
    cookie = headers["cookie"]
    csrf = csrf_from(body.decode())
    if email:
        form = urllib.parse.urlencode({"csrf_token": csrf, "email": email, "password": PASSWORD})
        status, headers, body = send(
            port, request("POST", b"/login", f"Cookie: {cookie}\r\n".encode(), form.encode())
        )
        assert status == 302, body
        cookie = headers["cookie"]
        _, _, body = send(port, request("GET", b"/account", f"Cookie: {cookie}\r\n".encode()))
        csrf = csrf_from(body.decode())
    return cookie, csrf


def probes(method: str, path: bytes, cookie: str, csrf: str):
    """(name, request, statuses allowed) for one route: each puts undecodable bytes somewhere."""
    session = f"Cookie: {cookie}\r\n".encode()
    form = f"csrf_token={csrf}".encode() if method == "POST" else b""
    exactly_400 = {400}
    # gunicorn reads a raw byte in the path as Latin-1 (ÿ, which is valid); encoded, it
    # reaches Flask as the byte, which Werkzeug cannot decode.
    yield "path", request(method, path + b"\xff", session, form), None
    yield "encoded path", request(method, path + b"%FF", session, form), exactly_400
    yield "query", request(method, path + b"?next=\xff&\xfe=1", session, form), exactly_400
    junk = JUNK_HEADERS + b"Referer: http://undersigned.test" + path + b"\xff\r\n"
    junk += f"Cookie: {cookie}; remember_token=".encode() + b"\xff\xfe; \xff=\xff\r\n"
    yield "headers", request(method, path, junk, form, host=b"\xff.test"), None
    yield "session cookie", request(method, path, b"Cookie: session=\xff\xfe\r\n", form), None
    if method == "POST":
        body = form + b"&name=\xff&email=\xfe@example.net"
        yield "form body", request(method, path, session, body), exactly_400
        headers, body = multipart(csrf)
        yield "multipart body", request(method, path, session + headers, body), exactly_400
        yield "content type", request(method, path, session + b"Content-Type: \xff\r\n", form), None


def fill(rule: str, values: dict[str, object]) -> bytes:
    """A path that `rule` matches: known values by argument name, else the first of an
    `any(...)`, else 1."""

    def value(match: re.Match[str]) -> str:
        converter, options, name = match.groups()
        if name in values:
            return str(values[name])
        if converter == "any":
            return re.findall(r"'([^']*)'", options)[0]
        return "1"

    return re.sub(r"<(?:(\w+)(?:\((.*?)\))?:)?(\w+)>", value, rule).encode()


def looks_like_the_site(path: bytes, headers: dict[str, str], body: bytes) -> bool:
    """The site's own error page: HTML with its header, or JSON under /api/."""
    if path.startswith(b"/api/"):
        return headers.get("content-type") == "application/json" and b'"error"' in body
    return b'class="site-header"' in body


def test_raw_bytes_on_every_route_get_the_sites_4xx_and_leave_no_token_in_any_log(
    site, app, database_url, tmp_path
):
    slug = site.letter()
    site.sign(slug, "bytes@example.net")
    site.deliver()
    token = site.mailbox.last_to("bytes@example.net").link().rsplit("/", 1)[1]
    with new_session(app, write=False) as session:
        petition_id = session.scalar(select(Petition.id))
    values = {"slug": slug, "token": token, "petition_id": petition_id, "filename": "style.css"}
    access_log = tmp_path / "access.log"
    process, base = start_gunicorn(
        database_url,
        workers=3,
        SECRET_KEY=TestingConfig.SECRET_KEY,
        ADDRESS_HASH_KEY=TestingConfig.ADDRESS_HASH_KEY,
        GUNICORN_CMD_ARGS=f"--access-logfile {access_log}",
    )
    port = int(base.rpartition(":")[2])
    try:
        sessions = {"anonymous": login(port, ""), "organizer": login(port, "olivia@example.org")}
        probed = [
            (f"{method} {rule.rule} {name}", path, raw, allowed)
            for rule in app.url_map.iter_rules()
            for path in [fill(rule.rule, values)]
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
            # Logged in, GETs with junk headers go deeper (the other probes are refused before
            # the login counts); POSTs stay anonymous, so none of them logs out.
            for person in (("anonymous", "organizer") if method == "GET" else ("anonymous",))
            for name, raw, allowed in probes(method, path, *sessions[person])
            if person == "anonymous" or name == "headers"
        ]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda probe: send(port, probe[2]), probed))
        failures = [
            f"{what}: {status} {body[:80]!r}"
            for (what, path, _, allowed), (status, headers, body) in zip(probed, answers)
            if status >= 500
            or (allowed is not None and status not in allowed)
            or (status >= 400 and not looks_like_the_site(path, headers, body))
        ]
        # Requests gunicorn refuses itself: it logs their request line (a warning, and the
        # access log), token and all unless its logger cuts it.
        assert send(port, b"GET /c/" + token.encode() + b"\r\n\r\n")[0] == 400
        bad_length = request("POST", f"/c/{token}".encode(), b"Content-Length: x\r\n")
        assert send(port, bad_length)[0] == 400
    finally:
        errors = stop(process)
    logs = errors + access_log.read_text(errors="replace")
    assert len(probed) > 500
    assert failures == [], (failures, errors[-6000:])
    assert token not in logs
    assert "Invalid HTTP request line: 'GET /c/...'" in errors
    assert re.search(r'"GET /c/\.\.\. HTTP/1\.1" 400', logs)
    assert "Traceback" not in errors
    assert "Error handling request" not in errors
