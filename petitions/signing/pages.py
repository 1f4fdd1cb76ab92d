"""The pages a signer sees after signing and after confirming, rendered once per letter.

Neither page changes once a letter is published, except for what belongs to the signer: the
code form's handle and CSRF token, or the withdrawal link and code. For anonymous signers each
is rendered once per process and letter, kept for a minute, and every signer gets a copy with
their own values spliced in (`PageWithHoles`). They are kept apart from the read cache, which
every write empties: confirmations would otherwise empty it many times a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import current_app, render_template, request
from flask_wtf.csrf import generate_csrf

from petitions import microcache
from petitions.caching import PageWithHoles, shared_page_cache
from petitions.quicksign import ANSWERED, Answered
from petitions.signing.forms import CodeForm
from petitions.signing.service import Confirmed, LetterRef

#: how long a rendering is kept, and how many bytes of them a process keeps at most
KEEP_SECONDS = 60.0
KEEP_BYTES = 4 * 1024 * 1024


def _store() -> microcache.TimedStore | None:
    """Where renderings are kept, or None when this visitor needs their own (logged in, a
    message waiting) or the read cache is off."""
    if shared_page_cache() is None:
        return None
    store = current_app.extensions.get("signer_pages")
    if store is None:
        store = microcache.TimedStore(KEEP_SECONDS, KEEP_BYTES, time.monotonic)
        current_app.extensions["signer_pages"] = store
    return store


def _kept(key: tuple[str, str], holes: dict[str, str], render: Callable[[], str]) -> str:
    """The page under `key` with this signer's `holes` filled, rendered when not kept."""
    store = _store()
    if store is None:
        return render()
    # What `petitions.quicksign` learns its answers from, when this page answers the request.
    request.environ[ANSWERED] = Answered(key, holes)
    kept: PageWithHoles | None = store.get(key)
    if kept is not None:
        return kept.fill(holes)
    html = render()
    kept = PageWithHoles.cut(html, holes)
    store.put(key, kept, kept.size)
    return html


def check_email(letter: LetterRef, handle: str) -> str:
    """ "Check your email", with the code form for this signer's `handle`."""
    return _kept(
        ("check_email", letter.slug),
        {"csrf_token": generate_csrf(), "handle": handle},
        lambda: render_template(
            "sign/check_email.html", petition=letter, code_form=CodeForm(handle=handle)
        ),
    )


def confirmed(result: Confirmed) -> str:
    """The page shown once after confirming, with this signer's withdrawal link and code."""
    return _kept(
        ("confirmed", result.petition.slug),
        {"withdraw_url": result.withdraw_url, "withdraw_code": result.withdraw_code},
        lambda: render_template("sign/confirmed.html", result=result),
    )
