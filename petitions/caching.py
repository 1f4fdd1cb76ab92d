"""HTTP caching of public pages, the API, the badge and the feed.

An anonymous reader's answer is the same for everyone, so it is `public` with a short max-age:
nginx (deploy/nginx.conf) and browsers keep it a few seconds and serve it a little stale while
they ask again. A logged-in visitor's page shows their name, so it is `private, no-cache`.
The ETag turns an unchanged answer into a bodiless 304.
"""

from __future__ import annotations

import hashlib
import re

from flask import Response, request, session
from flask_login import current_user

MAX_AGE = 5
STALE_WHILE_REVALIDATE = 10
PUBLIC = f"public, max-age={MAX_AGE}, stale-while-revalidate={STALE_WHILE_REVALIDATE}"
PRIVATE = "private, no-cache"
#: the time a page was counted, which changes on every rendering without changing its meaning
_COUNTED_AT = re.compile(rb'<time class="as-of"[^>]*>[^<]*</time>')


def is_personal() -> bool:
    """Whether this visitor's pages carry something of their own (a login, a message)."""
    return bool(current_user.is_authenticated) or "_flashes" in session


def conditional(response: Response, version: str | None = None, *, page: bool = False) -> Response:
    """Make a 200 `response` cacheable briefly, with an ETag; 304 when the client's copy matches.

    `version` names the content (default: the body, less the time it was counted). A `page`
    shows the visitor's login in its header: for a logged-in visitor it is private and always
    sent whole.
    """
    if response.status_code != 200:
        return response
    if page and is_personal():
        response.headers["Cache-Control"] = PRIVATE
        return response
    content = version.encode() if version is not None else _COUNTED_AT.sub(b"", response.get_data())
    response.set_etag(hashlib.sha256(content).hexdigest()[:32], weak=True)
    response.headers["Cache-Control"] = PUBLIC
    return response.make_conditional(request)
