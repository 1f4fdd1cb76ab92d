"""HTTP caching of public pages, the API, the badge and the feed.

Each answer may be kept for a few seconds and served a little stale while the browser or a
cache asks again; the ETag then turns an unchanged answer into a bodiless 304.

The ETag is weak: it names what the answer says, not its bytes. A letter's page carries
a per-session CSRF token and a form stamp that change on every rendering without changing
anything the reader sees; they are masked before hashing, and the session's own CSRF
secret is hashed in instead, so a 304 is given only to the browser whose cached copy holds
a token this session accepts.

Pages that read the session are `private, no-cache`: the browser asks every time (and
mostly gets a 304). No shared cache could keep them anyway. Everything else is `public`
with a short max-age. Counts on any of them may be up to `READ_CACHE_SECONDS` old (see
`petitions.microcache`); the pages say when they were counted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request, session
from werkzeug.http import quote_etag

from petitions import microcache

MAX_AGE = 5
STALE_WHILE_REVALIDATE = 10
PUBLIC = f"public, max-age={MAX_AGE}, stale-while-revalidate={STALE_WHILE_REVALIDATE}"
PRIVATE = "private, no-cache"

#: what changes on every rendering but not in meaning: hidden token values and "as of" times
_VOLATILE = re.compile(
    rb'(name="(?:csrf_token|started)"[^>]*?value=")[^"]*"|<time class="as-of"[^>]*>[^<]*</time>'
)


def _part(digest: Any, part: bytes) -> None:
    digest.update(len(part).to_bytes(8, "big") + part)


def _etag(digest: Any, secret: bytes) -> str:
    """The ETag: the content's digest with the session's CSRF secret (or nothing) hashed in."""
    digest = digest.copy()
    _part(digest, secret)
    return digest.hexdigest()[:40]


def content_digest(body: bytes) -> Any:
    """The first half of a page's ETag: its body with the volatile parts masked, hashed.

    Kept with a cached rendering, so each visitor's ETag costs one hash of their secret.
    """
    digest = hashlib.sha256()
    _part(digest, _VOLATILE.sub(rb"\1", body))
    return digest


def conditional(
    response: Response,
    version: str | bytes | None = None,
    *,
    private: bool = False,
    digest: Any = None,
) -> Response:
    """Make `response` cacheable briefly, with an ETag; 304 when the browser's copy matches.

    `version` names the content; without it the body (volatile parts masked) does, or
    `digest`, that body's `content_digest` computed before. A `private` page is one that
    reads the session: a form with a CSRF token, or the logged-in header of the layout.
    """
    if response.status_code != 200:
        return response
    if digest is None and version is None:
        digest = content_digest(response.get_data())
    elif digest is None:
        digest = hashlib.sha256()
        _part(digest, version.encode() if isinstance(version, str) else version)
    secret = b""
    if private:
        field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        secret = str(session.get(field, "")).encode()
        response.vary.add("Cookie")
    response.set_etag(_etag(digest, secret), weak=True)
    response.headers["Cache-Control"] = PRIVATE if private else PUBLIC
    return response.make_conditional(request)


@dataclass(frozen=True, slots=True)
class PageWithHoles:
    """A page rendered for anyone, with holes where each visitor's own values go.

    `parts` alternate text and hole names: text, hole, text, ... text.
    """

    parts: tuple[str, ...]
    digest: Any

    @classmethod
    def cut(cls, html: str, values: dict[str, str]) -> PageWithHoles:
        """Cut the visitor's `values` (hole name → value as rendered) out of `html`."""
        by_value = {value: name for name, value in values.items() if value}
        pattern = "|".join(re.escape(value) for value in sorted(by_value, key=len, reverse=True))
        pieces = re.split(f"({pattern})", html) if pattern else [html]
        parts = tuple(piece if i % 2 == 0 else by_value[piece] for i, piece in enumerate(pieces))
        return cls(parts, content_digest(html.encode()))

    def etag_header(self, csrf_secret: str) -> str:
        """The ETag header `conditional(private=True)` gives this page in a session whose
        CSRF secret is `csrf_secret`."""
        return quote_etag(_etag(self.digest, csrf_secret.encode()), weak=True)

    def fill(self, values: dict[str, str]) -> str:
        """The page with this visitor's values in its holes."""
        parts = list(self.parts)
        for i in range(1, len(parts), 2):
            parts[i] = values[parts[i]]
        return "".join(parts)

    @property
    def size(self) -> int:
        """About how many bytes it holds."""
        return sum(len(part) for part in self.parts)


def shared_page_cache() -> microcache.TimedStore | None:
    """Where anonymous renderings are kept, or None when this visitor needs their own.

    Anonymous means what Flask-Login would find: no user id in the session and no
    "remember me" cookie (checked without loading anyone).
    """
    cache = microcache.for_app(current_app)
    if cache is None or not cache.seconds:
        return None
    if "_flashes" in session or "_user_id" in session:
        return None
    if current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies:
        return None
    return cache.pages
