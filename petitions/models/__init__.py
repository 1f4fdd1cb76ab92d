"""The models, one module per aggregate; importing this package registers them all."""

from petitions.models.committee import (
    ActionKind,
    ActionState,
    CommitteeLogEntry,
    CommitteeMember,
    Invitation,
    PendingAction,
    Role,
)
from petitions.models.counter import PetitionCounter
from petitions.models.delivery import (
    Channel,
    Delivery,
    DeliveryPack,
    DeliveryResponse,
    ResponseSource,
    Target,
)
from petitions.models.history import CountSnapshot, SnapshotKind
from petitions.models.moderation import AuditEntry, Report, ReportKind
from petitions.models.outbox import OutboxMessage
from petitions.models.petition import EmployerDomain, Petition, PetitionState
from petitions.models.proof import ProofPhrase
from petitions.models.review import HideReason, Takedown
from petitions.models.signature import Affiliation, Display, Signature, SignatureState
from petitions.models.subscriber import Subscriber
from petitions.models.timeline import Outcome, TimelineEntry, TimelineKind
from petitions.models.token import Token, TokenPurpose
from petitions.models.user import User

__all__ = [
    "ActionKind",
    "ActionState",
    "Affiliation",
    "AuditEntry",
    "Channel",
    "CommitteeLogEntry",
    "CommitteeMember",
    "CountSnapshot",
    "Delivery",
    "DeliveryPack",
    "DeliveryResponse",
    "Display",
    "EmployerDomain",
    "HideReason",
    "Invitation",
    "OutboxMessage",
    "Outcome",
    "PendingAction",
    "Petition",
    "PetitionCounter",
    "PetitionState",
    "ProofPhrase",
    "Report",
    "ReportKind",
    "ResponseSource",
    "Role",
    "Signature",
    "SignatureState",
    "SnapshotKind",
    "Subscriber",
    "Takedown",
    "Target",
    "TimelineEntry",
    "TimelineKind",
    "Token",
    "TokenPurpose",
    "User",
]
