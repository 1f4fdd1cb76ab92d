"""The production server: several gunicorn workers writing at once, never "database is locked"."""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

from sqlalchemy import func, select

from petitions.db import new_session
from petitions.models import Signature
from tests.servers import start_gunicorn, stop


def test_four_workers_take_concurrent_signatures_without_errors(site, app, database_url):
    slug = site.letter()
    process, base = start_gunicorn(database_url, workers=4)
    statuses: list[int] = []
    try:

        def signer(number: int) -> None:
            opener = urllib.request.build_opener(
                urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
            )
            for attempt in range(5):
                html = opener.open(f"{base}/p/{slug}").read().decode()
                fields = dict(
                    re.findall(r'name="(csrf_token|started)" type="hidden" value="([^"]+)"', html)
                )
                body = urllib.parse.urlencode(
                    {
                        **fields,
                        "name": f"Worker {number}",
                        "email": f"w{number}-{attempt}@example.net",
                        "affiliation": "current",
                        "display": "counted",
                    }
                ).encode()
                try:
                    statuses.append(opener.open(f"{base}/p/{slug}/sign", body, timeout=60).status)
                except urllib.error.HTTPError as error:
                    statuses.append(error.code)

        threads = [threading.Thread(target=signer, args=(n,), daemon=True) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        errors = stop(process)
    assert statuses == [200] * 60
    assert "database is locked" not in errors
    assert "Traceback" not in errors
    with new_session(app, write=False) as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 60
