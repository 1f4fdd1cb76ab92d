"""HTTP caching of public pages, the API, the badge and the feed.

Each answer may be kept for a few seconds and served a little stale while the browser or a
cache asks again; the ETag then turns an unchanged answer into a bodiless 304.

The ETag is weak: it names what the answer says, not its bytes. A letter's page carries
a per-session CSRF token and a form stamp that change on every rendering without changing
anything the reader sees; they are masked before hashing, and the session's own CSRF
secret is hashed in instead, so a 304 is given only to the browser whose cached copy holds
a token this session accepts.

Pages that read the session are `private, no-cache`: the browser asks every time (and
mostly gets a 304), so someone who has just signed never sees the count from before.
No shared cache could keep them anyway. Everything else is `public` with a short max-age.
"""

from __future__ import annotations

import hashlib
import re

from flask import Response, current_app, request, session

MAX_AGE = 5
STALE_WHILE_REVALIDATE = 10
PUBLIC = f"public, max-age={MAX_AGE}, stale-while-revalidate={STALE_WHILE_REVALIDATE}"
PRIVATE = "private, no-cache"

#: what changes on every rendering but not in meaning: hidden token values and "as of" times
_VOLATILE = re.compile(
    rb'(name="(?:csrf_token|started)"[^>]*?value=")[^"]*"|<time class="as-of"[^>]*>[^<]*</time>'
)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:40]


def conditional(
    response: Response, version: str | bytes | None = None, *, private: bool = False
) -> Response:
    """Make `response` cacheable briefly, with an ETag; 304 when the browser's copy matches.

    `version` names the content; without it the body (volatile parts masked) does. A
    `private` page is one that reads the session: a form with a CSRF token, or the
    logged-in header of the site's layout.
    """
    if response.status_code != 200:
        return response
    if version is None:
        content = _VOLATILE.sub(rb"\1", response.get_data())
    else:
        content = version.encode() if isinstance(version, str) else version
    secret = b""
    if private:
        field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        secret = str(session.get(field, "")).encode()
        response.vary.add("Cookie")
    response.set_etag(_digest(content, secret), weak=True)
    response.headers["Cache-Control"] = PRIVATE if private else PUBLIC
    return response.make_conditional(request)
