"""A real DNS server (dnslib) that publishes test DKIM keys, and messages signed with them.

The keys are made by `openssl` for each test run; the server answers TXT queries for
`<selector>._domainkey.<domain>` on 127.0.0.1 and can be told to fail (SERVFAIL).
"""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

import dkim
import pytest
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from flask import Flask

from petitions import create_app
from petitions.db import get_engine
from tests.conftest import make_config
from tests.mailbox import Mailbox, free_port

SELECTOR = "s2026"
#: the domains whose keys the server publishes
DOMAINS = ("example.com", "eng.example.com", "elsewhere.net")


def new_key() -> tuple[bytes, bytes]:
    """A fresh 2048-bit RSA key: (PKCS#1 private key in PEM, public key in DER)."""
    private = subprocess.run(
        ["openssl", "genrsa", "-traditional", "2048"], capture_output=True, check=True
    ).stdout
    public = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"],
        input=private,
        capture_output=True,
        check=True,
    ).stdout
    return private, public


class KeyResolver(BaseResolver):
    """Answers the published DKIM keys; everything else does not exist."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.failing = False
        self.queries: list[str] = []
        self.lock = threading.Lock()

    def resolve(self, request, handler):  # type: ignore[no-untyped-def]
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self.lock:
            self.queries.append(name)
            record = self.records.get(name)
            failing = self.failing
        if failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif record is not None and request.q.qtype == QTYPE.TXT:
            chunks = [record[i : i + 255] for i in range(0, len(record), 255)]
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        elif record is None:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class KeyServer:
    """The DNS server on a free port, over UDP and TCP (long keys may need TCP)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.resolver = KeyResolver()
        self.keys: dict[str, bytes] = {}
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self.servers = [
            DNSServer(self.resolver, address="127.0.0.1", port=self.port, logger=quiet, tcp=tcp)
            for tcp in (False, True)
        ]

    @property
    def address(self) -> str:
        """What DKIM_NAMESERVER is set to."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        for server in self.servers:
            server.start_thread()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def publish(self, domain: str, selector: str = SELECTOR) -> bytes:
        """Make a key for `domain`, answer its record, and return the private key."""
        private, public = new_key()
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        with self.resolver.lock:
            self.resolver.records[f"{selector}._domainkey.{domain}"] = record
        self.keys[domain] = private
        return private


def message(
    sender: str,
    to: str,
    body: str,
    date: datetime,
    subject: str = "Hello",
) -> EmailMessage:
    """A plain message as a mail program writes it."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = format_datetime(date)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    mail.set_content(body)
    return mail


def signed(
    mail: EmailMessage,
    private_key: bytes,
    domain: str,
    headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date", b"message-id"),
    selector: str = SELECTOR,
) -> bytes:
    """The message's bytes with a DKIM-Signature, as the sending domain's server adds it."""
    raw = mail.as_bytes(policy=SMTP)
    signature = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=list(headers),
    )
    return signature + raw


@pytest.fixture(scope="module", name="dns")
def dns_fixture() -> Iterator[KeyServer]:
    """The DNS server that publishes the test domains' DKIM keys (import it to use it)."""
    server = KeyServer()
    server.start()
    for domain in DOMAINS:
        server.publish(domain)
    yield server
    server.stop()


@pytest.fixture(name="app")
def dkim_app_fixture(
    database_url: str, mailbox: Mailbox, dns: KeyServer, request: pytest.FixtureRequest
) -> Iterator[Flask]:
    """The app, asking the test DNS server for DKIM keys (replaces conftest's `app`, and
    takes `@pytest.mark.config(...)` as it does)."""
    mailbox.clear()
    mailbox.reject_code = None
    dns.resolver.failing = False
    marker = request.node.get_closest_marker("config")
    config = make_config(
        database_url,
        mailbox.port,
        DKIM_NAMESERVER=dns.address,
        DKIM_DNS_TIMEOUT=2.0,
        **(marker.kwargs if marker else {}),
    )
    application = create_app(config)
    yield application
    get_engine(application).dispose()
