"""`signed.Prepared` answers exactly as the itsdangerous serializer it wraps."""

from __future__ import annotations

import hashlib
import random
import secrets
import time

import pytest
from flask import Flask
from itsdangerous import (
    BadData,
    Signer,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

from petitions.signed import Prepared

OLD, NEW = "an old key that was rotated out", "the key in use now, long and random"


def _flask_sessions(keys: list[str]):
    app = Flask(__name__)
    app.secret_key = keys[-1]
    app.config["SECRET_KEY_FALLBACKS"] = keys[:-1]
    return app.session_interface.get_signing_serializer(app)


# Every kind the app wraps: Flask's session cookie, Flask-WTF's CSRF token, the form stamp
# (timed), the emailed links (untimed, SHA-256, with a fallback key).
KINDS = {
    "session": (lambda keys: _flask_sessions(keys), {"csrf_token": "x" * 40}),
    "csrf": (lambda keys: URLSafeTimedSerializer(keys, salt="wtf-csrf-token"), "s" * 40),
    "stamp": (lambda keys: URLSafeTimedSerializer(keys, salt="sign-form"), 1),
    "link": (
        lambda keys: URLSafeSerializer(
            keys, salt="undersigned/confirm", signer_kwargs={"digest_method": hashlib.sha256}
        ),
        "n" * 43,
    ),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    return KINDS[request.param]


def _outcome(call):
    """What a call gives: its value, or its error's kind and message."""
    try:
        return ("value", call())
    except BadData as error:
        return (type(error).__name__, str(error))


def _same_second(make):
    """`make()` twice within one second of the clock, so timestamps agree."""
    while True:
        started = int(time.time())
        made = make()
        if int(time.time()) == started:
            return made


def test_dumps_gives_the_serializers_own_bytes(kind):
    build, value = kind
    serializer = build([OLD, NEW])
    prepared = Prepared(serializer)
    assert prepared._keys, "the fast path must be taken for this serializer"
    mine, theirs = _same_second(lambda: (prepared.dumps(value), serializer.dumps(value)))
    assert mine == theirs
    assert isinstance(mine, str)
    # A value long enough to be compressed takes the serializer's own payload path too.
    long_value = {"csrf_token": "y" * 400} if isinstance(value, dict) else "y" * 400
    mine, theirs = _same_second(lambda: (prepared.dumps(long_value), serializer.dumps(long_value)))
    assert mine == theirs and theirs.startswith(".")


# What the app signs without compression: random secrets and nonces, as it makes them.
RANDOM = {
    "session": lambda: {"csrf_token": secrets.token_hex(20)},
    "csrf": lambda: secrets.token_hex(20),
    "stamp": lambda: secrets.randbelow(2**31),
    "link": lambda: secrets.token_urlsafe(32),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_without_compression_random_values_get_the_serializers_own_bytes(name):
    build, _value = KINDS[name]
    serializer = build([OLD, NEW])
    prepared = Prepared(serializer, compress=False)
    for _ in range(200):
        value = RANDOM[name]()
        mine, theirs = _same_second(lambda v=value: (prepared.dumps(v), serializer.dumps(v)))
        assert mine == theirs
        assert serializer.loads(mine) == value


def test_without_compression_a_value_that_would_shrink_is_signed_longer_and_still_reads(kind):
    build, value = kind
    serializer = build([OLD, NEW])
    prepared = Prepared(serializer, compress=False)
    long_value = {"csrf_token": "y" * 400} if isinstance(value, dict) else "y" * 400
    theirs = serializer.dumps(long_value)
    mine = prepared.dumps(long_value)
    assert theirs.startswith(".") and not mine.startswith(".")
    assert len(mine) > len(theirs)
    # Both forms read back, here and in the serializer itself (Flask, Flask-WTF).
    for token in (mine, theirs):
        assert serializer.loads(token) == long_value
        assert prepared.loads(token) == long_value


def test_loads_reads_what_the_serializer_signed_under_any_of_its_keys(kind):
    build, value = kind
    prepared = Prepared(build([OLD, NEW]))
    for keys in ([NEW], [OLD], [OLD, NEW]):
        token = build(keys).dumps(value)
        assert prepared.loads(token) == value
        assert prepared.loads(token.encode()) == value
    assert prepared.loads(prepared.dumps(value)) == value
    # A key the serializer does not hold is refused, as the serializer refuses it.
    stranger = build(["somebody else's key"]).dumps(value)
    assert _outcome(lambda: prepared.loads(stranger)) == _outcome(
        lambda: prepared.serializer.loads(stranger)
    )
    assert _outcome(lambda: prepared.loads(stranger))[0] != "value"


def test_every_altered_token_is_refused_with_the_serializers_own_error(kind):
    build, value = kind
    serializer = build([OLD, NEW])
    prepared = Prepared(serializer)
    token = serializer.dumps(value)
    rng = random.Random(6)
    alphabet = "ABCDEFabcdef0123456789-_."
    altered = {token[:-1], token[1:], token + "A", "", ".", "..", token.replace(".", "")}
    for position in range(len(token)):
        for _ in range(3):
            altered.add(token[:position] + rng.choice(alphabet) + token[position + 1 :])
    altered.discard(token)
    for candidate in sorted(altered):
        expected = _outcome(lambda c=candidate: serializer.loads(c))
        assert _outcome(lambda c=candidate: prepared.loads(c)) == expected, candidate


def test_time_limits_and_timestamps_are_the_timed_serializers(monkeypatch):
    serializer = URLSafeTimedSerializer([OLD, NEW], salt="sign-form")
    prepared = Prepared(serializer)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 100)
    token = serializer.dumps(1)
    future = (serializer.dumps(2), 2)
    monkeypatch.setattr(time, "time", lambda: now)
    assert prepared.loads(token, max_age=100) == 1
    value, signed_at = prepared.loads(token, return_timestamp=True)
    assert (value, signed_at) == serializer.loads(token, return_timestamp=True)
    assert signed_at.tzinfo is not None and int(signed_at.timestamp()) == int(now - 100)
    for max_age in (0, 99):
        assert _outcome(lambda a=max_age: prepared.loads(token, max_age=a)) == _outcome(
            lambda a=max_age: serializer.loads(token, max_age=a)
        )
        assert _outcome(lambda a=max_age: prepared.loads(token, max_age=a))[0] == (
            "SignatureExpired"
        )
    # Signed "in the future" (a clock set back): refused as itsdangerous refuses it.
    monkeypatch.setattr(time, "time", lambda: now - 200)
    assert _outcome(lambda: prepared.loads(future[0], max_age=1000)) == _outcome(
        lambda: serializer.loads(future[0], max_age=1000)
    )
    assert _outcome(lambda: prepared.loads(future[0], max_age=1000))[0] == "SignatureExpired"


class _OddSigner(Signer):
    """A signer whose signatures are not the plain HMAC of the value."""

    def get_signature(self, value):
        return super().get_signature(b"odd" + bytes(value))

    def verify_signature(self, value, sig):
        return sig == self.get_signature(value)


def test_a_signer_it_does_not_know_is_left_to_the_serializer():
    serializer = URLSafeSerializer(NEW, salt="odd", signer=_OddSigner)
    prepared = Prepared(serializer)
    assert prepared._keys == []
    token = serializer.dumps("v")
    assert prepared.dumps("v") == token
    assert prepared.loads(token) == "v"
    assert _outcome(lambda: prepared.loads(token[:-2])) == _outcome(
        lambda: serializer.loads(token[:-2])
    )
    timed = URLSafeTimedSerializer(NEW, signer=TimestampSigner, signer_kwargs={"sep": "~"})
    assert Prepared(timed).loads(timed.dumps("w")) == "w"
