"""The one check every committee page makes: is the logged-in account a member, in what role."""

from __future__ import annotations

from flask import abort
from flask_login import current_user

from petitions.committee import service as committee
from petitions.db import get_session
from petitions.models import CommitteeMember, Petition, Role


def member_or_abort(
    petition_id: int, needs: Role = Role.VIEWER
) -> tuple[Petition, CommitteeMember]:
    """The letter and the current account's membership; 404 for outsiders, 403 below `needs`."""
    try:
        return committee.membership(get_session(), current_user, petition_id, needs)
    except committee.NotMember:
        abort(404)
    except committee.NotAllowed:
        abort(403)
