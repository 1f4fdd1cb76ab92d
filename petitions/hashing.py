"""Secrets in links and codes, and the keyed hash of signers' addresses.

A link carries a random 256-bit nonce signed with SECRET_KEY (SHA-256, salted with
the token's purpose), so a tampered or cross-purpose link is refused before the
database is asked; the database keeps only SHA-256 of the nonce. Codes are 8
characters of Crockford base32 (40 bits) with a handful of attempts each.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
#: withdrawal codes are typed without any page context, so they carry 80 bits
LONG_CODE_LENGTH = 16
MAX_TOKEN_LENGTH = 200


def _serializer(purpose: str) -> URLSafeSerializer:
    """The signer of links for one purpose, under SECRET_KEY and its fallbacks."""
    config = current_app.config
    return URLSafeSerializer(
        [*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]],
        salt=f"undersigned/{purpose}",
        signer_kwargs={"digest_method": hashlib.sha256},
    )


def new_nonce() -> str:
    """A fresh random nonce of 256 bits."""
    return secrets.token_urlsafe(32)


def new_handle() -> str:
    """A random public id of 128 bits, safe to put in a page."""
    return secrets.token_urlsafe(16)


_HANDLE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def is_handle(value: str | None) -> bool:
    """Whether a value from a form could be a handle at all (checked before any query)."""
    return bool(value) and _HANDLE.fullmatch(value) is not None


def sign_nonce(purpose: str, nonce: str) -> str:
    """The string that goes into an emailed link."""
    return _serializer(purpose).dumps(nonce)


def unsign_nonce(purpose: str, token: str) -> str | None:
    """The nonce in a link; None when malformed, tampered or for another purpose."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        nonce = _serializer(purpose).loads(token)
    except (BadSignature, UnicodeDecodeError, ValueError):
        return None
    return nonce if isinstance(nonce, str) else None


def hash_nonce(nonce: str) -> str:
    """What the database keeps of a nonce."""
    return hashlib.sha256(nonce.encode()).hexdigest()


def new_code(length: int = CODE_LENGTH) -> str:
    """A one-time code to type instead of clicking (5 bits a character)."""
    # 32 letters: the low 5 bits of each random byte pick one, all equally likely.
    return "".join([CODE_ALPHABET[byte & 31] for byte in secrets.token_bytes(length)])


def format_code(code: str) -> str:
    """A code as shown to people, in groups of four: ABCD-EFGH."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize_code(typed: str, length: int = CODE_LENGTH) -> str | None:
    """The code someone typed, forgiving case, spaces, dashes and look-alike letters."""
    if len(typed) > 4 * length:
        return None
    cleaned = "".join(ch for ch in typed.upper() if ch not in " -\t")
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    if len(cleaned) != length or any(ch not in CODE_ALPHABET for ch in cleaned):
        return None
    return cleaned


def _keyed_hash(message: str) -> str:
    key = current_app.config["ADDRESS_HASH_KEY"].encode()
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def hash_code(handle: str, code: str) -> str:
    """Keyed hash of a code, bound to the token it belongs to."""
    return _keyed_hash(f"code:{handle}:{code}")


def codes_match(stored_hash: str, handle: str, code: str) -> bool:
    """Constant-time comparison of a typed code with the stored hash."""
    return hmac.compare_digest(stored_hash, hash_code(handle, code))


def canonical_address(email: str) -> str:
    """One spelling per mailbox: case folded, `+tag` removed."""
    local, _, domain = email.rpartition("@")
    local = local.split("+", 1)[0].casefold()
    return f"{local}@{domain.casefold()}"


def hash_address(canonical: str) -> str:
    """The keyed hash that stands in for an address once a signature is confirmed."""
    return _keyed_hash(f"address:{canonical}")
