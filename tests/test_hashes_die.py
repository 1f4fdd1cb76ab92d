"""Address hashes die with the letter: closing it erases every one in the same transaction,
so nothing left (raw SQLite bytes, a PostgreSQL dump) can be tested against a directory."""

from __future__ import annotations

import re

from sqlalchemy import select

from petitions.db import checkpoint_sqlite, get_engine, new_session
from petitions.hashing import hash_address
from petitions.models import Petition, Signature
from tests.conftest import csrf_from
from tests.dkim_dns import dkim_app_fixture, dns_fixture  # noqa: F401 (fixtures app, dns)
from tests.test_sent_proof import EMPLOYERS, prove, stored_text


def _checkpoint(site) -> None:
    """What the worker does every minute: fold SQLite's write-ahead log into the file."""
    checkpoint_sqlite(get_engine(site.app))


def _hashes(app, petition_id: int) -> list[str | None]:
    with new_session(app, write=False) as session:
        query = select(Signature.address_hash).where(Signature.petition_id == petition_id)
        return list(session.scalars(query))


def _sign_by_code(site, slug: str, email: str, name: str, display: str = "named") -> None:
    site.sign(slug, email, name=name, display=display)
    assert "Your signature counts" in site.confirm_link(email).get_data(as_text=True)


def test_closing_erases_every_address_hash_and_keeps_counts_names_and_withdrawal(site, app, dns):
    slug = site.letter(employers=EMPLOYERS)
    open_slug = site.publish(site.draft("A letter that stays open", employers=EMPLOYERS))
    _sign_by_code(site, slug, "nadia@example.com", "Nadia Namedperson")
    _sign_by_code(site, slug, "colin@example.com", "Colin", display="counted")
    proven = prove(site, dns, slug).get_data(as_text=True)
    withdraw_code = re.search(r'id="withdraw-code">([^<]+)<', proven).group(1)
    site.sign(slug, "pete.pending@example.com", name="Pete")  # never confirmed
    _sign_by_code(site, open_slug, "kept@example.com", "Kept")
    with new_session(app, write=False) as session:
        petition_id = session.scalars(select(Petition.id).where(Petition.slug == slug)).one()
    hashes = _hashes(app, petition_id)
    with app.app_context():
        assert hash_address("ann@example.com") in hashes  # the sent-message signer's too
        kept = hash_address("kept@example.com")
    assert len(hashes) == 4 and None not in hashes
    _checkpoint(site)
    before = stored_text(app)
    assert all(h in before for h in hashes) and "pete.pending@example.com" in before

    closed = site.post_form(f"/letters/{petition_id}", f"/letters/{petition_id}/close", {})
    assert closed.status_code == 302
    _checkpoint(site)

    assert _hashes(app, petition_id) == [None, None, None]  # the pending one is gone
    stored = stored_text(app)
    for address_hash in hashes:
        assert address_hash not in stored
    assert "pete.pending@example.com" not in stored
    assert kept in stored  # the open letter still refuses a second signature
    assert site.count(slug) == 3
    page = site.client.get(f"/p/{slug}").get_data(as_text=True)
    assert "Nadia Namedperson" in page and "Ann Example" in page
    form = site.client.get("/withdraw").get_data(as_text=True)
    withdrawn = site.client.post(
        "/withdraw", data={"csrf_token": csrf_from(form), "code": withdraw_code}
    )
    assert "Your signature is withdrawn" in withdrawn.get_data(as_text=True)
    assert site.count(slug) == 2
    assert "Ann Example" not in site.client.get(f"/p/{slug}").get_data(as_text=True)
    safety = site.client.get("/safety").get_data(as_text=True)
    assert "the keyed hash of every signer's address is erased in the same step" in safety
