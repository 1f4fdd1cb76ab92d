"""The models, one module per aggregate; importing this package registers them all."""

from petitions.models.counter import PetitionCounter
from petitions.models.history import CountSnapshot, SnapshotKind
from petitions.models.moderation import AuditEntry, Report, ReportKind
from petitions.models.outbox import OutboxMessage
from petitions.models.petition import EmployerDomain, Petition, PetitionState
from petitions.models.proof import ProofPhrase
from petitions.models.signature import Affiliation, Display, Signature, SignatureState
from petitions.models.token import Token, TokenPurpose
from petitions.models.user import User

__all__ = [
    "Affiliation",
    "AuditEntry",
    "CountSnapshot",
    "Display",
    "EmployerDomain",
    "OutboxMessage",
    "Petition",
    "PetitionCounter",
    "PetitionState",
    "Report",
    "ReportKind",
    "Signature",
    "SignatureState",
    "SnapshotKind",
    "Token",
    "TokenPurpose",
    "User",
]
