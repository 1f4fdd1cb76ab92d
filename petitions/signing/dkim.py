"""Checking a message the signer sent themself: its DKIM signature, its From and its Date.

The raw message is read from memory and dropped after the check: nothing of it is stored,
and dkimpy's log (whose tags may name the sender) goes nowhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

import dkim
import dns.exception
import dns.name
import dns.resolver

from petitions.models import EmployerDomain, Petition
from petitions.models.errors import DomainError

#: the largest message checked (the request itself is capped below it, see proof_views)
MAX_MESSAGE_BYTES = 200 * 1024
#: how far a message's Date may be ahead of our clock
CLOCK_SKEW = timedelta(minutes=5)

log = logging.getLogger(__name__)

#: dkimpy logs a signature's tags, whose i= may hold the signer's address: that log goes nowhere
_QUIET = logging.getLogger(f"{__name__}.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

_FORWARD_SUBJECT = re.compile(r"\s*(fwd?|tr|wg|rv|enc)\s*:", re.IGNORECASE)
_FORWARD_MARKERS = ("forwarded message", "original message", "begin forwarded message")


class ProofRefused(DomainError):
    """The message cannot prove the address; the text says what to do instead."""


class DnsUnavailable(ProofRefused):
    """The signing domain's key could not be looked up now: try again."""


@dataclass(frozen=True)
class SentMessage:
    """What a checked message proves: who sent it, from where, when, and what it says."""

    address: str
    signing_domain: str
    sent_at: datetime
    text: str


def txt_lookup(nameserver: str, timeout: float) -> Callable[..., bytes | None]:
    """dkimpy's `dnsfunc`: the DKIM key record at a name, through `nameserver` ("host:port",
    empty for the system's). A name without a key is None; an unanswered lookup raises."""
    try:
        resolver = dns.resolver.Resolver(configure=not nameserver)
        if nameserver:
            host, port = _host_and_port(nameserver)
            resolver.nameservers = [host]
            resolver.port = port
    except dns.exception.DNSException as exc:
        raise DnsUnavailable(_TRY_AGAIN) from exc
    except ValueError as exc:
        log.error("DKIM_NAMESERVER is not an IP address with an optional :port")
        raise DnsUnavailable(_TRY_AGAIN) from exc

    def lookup(name: bytes, timeout: float = timeout) -> bytes | None:
        try:
            qname = dns.name.from_text(name.decode("ascii"))
        except (UnicodeDecodeError, dns.exception.DNSException):
            return None  # no such name can hold a key
        try:
            answer = resolver.resolve(qname, "TXT", lifetime=timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(_TRY_AGAIN) from exc
        records = [b"".join(record.strings) for record in answer]
        return next((record for record in records if b"p=" in record), None)

    return lookup


def _host_and_port(nameserver: str) -> tuple[str, int]:
    """ "192.0.2.1:5353", "[2001:db8::1]:53", or an address alone (port 53)."""
    if nameserver.startswith("["):
        host, _, port = nameserver[1:].partition("]")
        return host, int(port.removeprefix(":") or 53)
    if nameserver.count(":") == 1:
        host, _, port = nameserver.partition(":")
        return host, int(port)
    return nameserver, 53


#: what the standard library's parser and dkimpy raise on a malformed message, besides their own
_MALFORMED = (ValueError, LookupError, TypeError)
_UNREADABLE = (
    "This does not look like a whole email message. Save the message itself (“Show original”,"
    " “Download message” or “Save as .eml”) and upload that file as it is."
)
_TRY_AGAIN = (
    "We could not look up your employer's mail signing key just now. Nothing was saved:"
    " please try again in a minute."
)


def _employer(petition: Petition, domain: str) -> EmployerDomain | None:
    """The letter's listed employer whose domain `domain` is, or is a subdomain of."""
    return petition.company_for(domain.casefold().rstrip("."))


def _companies(petition: Petition) -> str:
    return ", ".join(f"@{employer.domain}" for employer in petition.domains)


def check_message(
    raw: bytes,
    petition: Petition,
    now: datetime,
    dnsfunc: Callable[..., bytes | None],
    max_age: timedelta,
) -> SentMessage:
    """Check a raw message against the letter's employers; what it proves, or ProofRefused
    saying why it proves nothing."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProofRefused(
            "This message is too large. Send a short message with only the phrase, no attachments."
        )
    raw = raw.lstrip()
    try:
        # The lenient compat32 parser: headers stay strings, read by getaddresses and parsedate.
        message = BytesParser().parsebytes(raw)
        whole = bool(message.get_all("from"))
        forwarded = _looks_forwarded(message)
    except _MALFORMED:
        whole = False
    if not whole:
        raise ProofRefused(_UNREADABLE)
    signing_domain = _verified_domain(raw, petition, dnsfunc, forwarded)
    try:
        address = _sender(message, petition, signing_domain)
        sent_at = _sent_at(message, now, max_age)
        return SentMessage(address, signing_domain, sent_at, _text_of(message))
    except _MALFORMED:
        raise ProofRefused(_UNREADABLE) from None


def _verified_domain(
    raw: bytes, petition: Petition, dnsfunc: Callable[..., bytes | None], forwarded: bool
) -> str:
    """The domain of a valid DKIM signature by a listed employer covering From, Date and body."""
    try:
        checker = dkim.DKIM(raw, logger=_QUIET, minkey=1024)
    except (dkim.DKIMException, *_MALFORMED):
        raise ProofRefused(_UNREADABLE) from None
    headers = [value for name, value in checker.headers if name.lower() == b"dkim-signature"]
    verified: list[str] = []
    for index in range(len(headers)):
        try:
            valid = checker.verify(idx=index, dnsfunc=dnsfunc)
        except (dkim.DKIMException, *_MALFORMED):
            valid = False
        if not valid:
            continue
        domain = checker.domain.decode("ascii", "replace").casefold()
        covered = set(checker.include_headers)
        if _employer(petition, domain) is None:
            verified.append(domain)
        elif {b"from", b"date"} <= covered and b"l" not in checker.signature_fields:
            return domain
        else:
            raise ProofRefused(
                "Your employer's mail system signed this message, but not its sender, date and"
                " whole text, so it cannot prove your address. Please use the emailed code."
            )
    if forwarded:
        raise ProofRefused(
            "This message was forwarded, and forwarding loses the proof. From your work account,"
            " write a new message (not a forward) with the phrase, send it to your personal"
            " address, and upload that one."
        )
    companies = _companies(petition)
    if verified:
        raise ProofRefused(
            f"This message was signed by {verified[0]}, which is not one of this letter's"
            f" companies ({companies}). Send it from your work account."
        )
    if headers:
        raise ProofRefused(
            "This message was changed after it was sent: its DKIM signature no longer matches."
            " Upload the file exactly as your mail program saved it, without editing it."
        )
    raise ProofRefused(
        "This message has no DKIM signature, so it cannot show where it came from. Make sure"
        " you upload the message your work account sent; if your employer's mail is not"
        " signed, please use the emailed code."
    )


def _looks_forwarded(message: Message) -> bool:
    """Whether the signer forwarded a message instead of sending one."""
    if _FORWARD_SUBJECT.match(str(message.get("subject", ""))):
        return True
    if any(part.get_content_type() == "message/rfc822" for part in message.walk()):
        return True
    text = _text_of(message).casefold()
    return any(marker in text for marker in _FORWARD_MARKERS)


def _sender(message: Message, petition: Petition, signing_domain: str) -> str:
    """The one From address, at the same listed employer as the signature."""
    senders = [address for _, address in getaddresses([str(v) for v in message.get_all("from")])]
    if len(senders) != 1 or "@" not in senders[0]:
        raise ProofRefused("This message must come from exactly one sender address.")
    address = senders[0]
    from_domain = address.rpartition("@")[2]
    employer = _employer(petition, from_domain)
    if employer is None or employer is not _employer(petition, signing_domain):
        raise ProofRefused(
            f"This message is from an address at {from_domain}, not at this letter's"
            f" companies ({_companies(petition)}). Send it from your work account."
        )
    return address


def _sent_at(message: Message, now: datetime, max_age: timedelta) -> datetime:
    """The message's (signed) Date, which must be recent."""
    if len(message.get_all("date") or []) != 1:
        # DKIM signs the last of repeated headers, so an added one on top would go unchecked.
        raise ProofRefused("This message must have exactly one date. Upload it as it was saved.")
    try:
        sent_at = parsedate_to_datetime(str(message["date"]))
    except (TypeError, ValueError):
        raise ProofRefused("This message has no readable date, so it cannot be checked.") from None
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    if sent_at > now + CLOCK_SKEW:
        raise ProofRefused("This message is dated in the future. Send a new one from work.")
    if sent_at < now - max_age:
        raise ProofRefused(
            "This message is too old. Get a new phrase and send a new message within the hour."
        )
    return sent_at


def _text_of(message: Message) -> str:
    """The decoded text of every text part (plain and HTML), attachments left out."""
    texts = []
    for part in message.walk():
        if part.get_content_maintype() != "text" or part.get_content_disposition() == "attachment":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
        except (LookupError, ValueError):  # an unknown or malformed charset
            texts.append(payload.decode("utf-8", "replace"))
    return "\n".join(texts)
