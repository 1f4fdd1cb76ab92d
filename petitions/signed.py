"""itsdangerous serializers with their keys derived once.

Each `loads` or `dumps` of an itsdangerous serializer builds a new signer, derives its key
again (a hash or an HMAC) and signs through a new `hmac.HMAC` object. A signature taken
before Flask reads three signed values (the session cookie, the CSRF token, the form's
stamp) and makes two (the next CSRF token, the emailed link); under a rush of signers that
came to a sixth of the web process's Python time. `Prepared` wraps a serializer and gives
the same answers for a fraction of the work:

* the keys are derived once, by the serializer's own signer, and checked against it: if a
  signature made here differs from the signer's own for a probe value (another algorithm, a
  custom signer), nothing is done here and every call goes to the serializer;
* `dumps` gives exactly what the serializer's `dumps` would give in the same second. With
  `compress=False` it never tries zlib, which a URL-safe serializer tries on every value and
  which was most of a `dumps` (a zlib stream set up and torn down, about 10 µs): for the
  random secrets signed that way compression never saves anything, so the bytes are the
  same; a value it would have shortened gets the longer form, which every `loads` reads;
* `loads` answers only when every check passed: a good signature under one of the keys, a
  well-formed timestamp within `max_age` and a payload the serializer's own `load_payload`
  reads. Anything else (a bad or expired signature, a value signed by a fallback signer) is
  handed to the serializer's own `loads`, which raises or answers as it always has.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from itsdangerous import TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes
from itsdangerous.url_safe import URLSafeSerializerMixin

#: what a signature made here is checked against, once per serializer
_PROBE = b"undersigned probe"
_NOT_HERE = object()


class Prepared:
    """An itsdangerous serializer's `loads` and `dumps`, with its keys derived once."""

    def __init__(self, serializer: Any, *, compress: bool = True) -> None:
        self.serializer = serializer
        #: a URL-safe serializer whose payloads are never compressed here
        self._plain = not compress and isinstance(serializer, URLSafeSerializerMixin)
        self._signer = signer = serializer.make_signer()
        self._timed = isinstance(signer, TimestampSigner)
        self._text = bool(serializer.is_text_serializer)
        self._sep: bytes = signer.sep
        #: derived keys, newest first (the order the signer tries them), and the digest's name
        self._keys: list[bytes] = []
        self._digest = ""
        try:
            digest = signer.digest_method().name
            keys = [signer.derive_key(key) for key in reversed(signer.secret_keys)]
            mine = base64_encode(hmac.digest(keys[0], _PROBE, digest))
            if mine == signer.get_signature(_PROBE) and all(
                signer.algorithm.verify_signature(key, _PROBE, hmac.digest(key, _PROBE, digest))
                for key in keys
            ):
                self._keys, self._digest = keys, digest
        except Exception:  # a signer this does not know: the serializer does all the work
            self._keys = []

    def dumps(self, obj: Any) -> Any:
        """What the serializer's `dumps(obj)` gives (uncompressed with `compress=False`)."""
        if not self._keys:
            return self.serializer.dumps(obj)
        if self._plain:  # the mixin's payload, less its attempt at compression
            value = base64_encode(super(URLSafeSerializerMixin, self.serializer).dump_payload(obj))
        else:
            value = self.serializer.dump_payload(obj)
        if self._timed:
            value += self._sep + base64_encode(int_to_bytes(int(time.time())))
        signed = value + self._sep + base64_encode(hmac.digest(self._keys[0], value, self._digest))
        return signed.decode() if self._text else signed

    def loads(self, signed: str | bytes, max_age: int | None = None, **kwargs: Any) -> Any:
        """What the serializer's `loads` gives; `max_age` and `return_timestamp` as a timed
        serializer takes them."""
        return_timestamp = bool(kwargs.get("return_timestamp"))
        if self._keys and set(kwargs) <= {"return_timestamp"}:
            found = self._checked(signed, max_age, return_timestamp)
            if found is not _NOT_HERE:
                return found
        if self._timed:
            return self.serializer.loads(signed, max_age=max_age, **kwargs)
        return self.serializer.loads(signed, **kwargs)

    def _checked(self, signed: str | bytes, max_age: int | None, return_timestamp: bool) -> Any:
        """The payload (and time signed) when every check passes, else `_NOT_HERE`."""
        try:
            data = signed.encode() if isinstance(signed, str) else signed
            value, sep, signature = data.rpartition(self._sep)
            if not sep:
                return _NOT_HERE
            mac = base64_decode(signature)
            if not any(
                hmac.compare_digest(hmac.digest(key, value, self._digest), mac)
                for key in self._keys
            ):
                return _NOT_HERE
            if not self._timed:
                return self.serializer.load_payload(value)
            value, sep, stamp = value.rpartition(self._sep)
            if not sep:
                return _NOT_HERE
            signed_at = bytes_to_int(base64_decode(stamp))
            if max_age is not None and not 0 <= int(time.time()) - signed_at <= max_age:
                return _NOT_HERE
            payload = self.serializer.load_payload(value)
            if return_timestamp:
                return payload, self._signer.timestamp_to_datetime(signed_at)
            return payload
        except Exception:  # the serializer's own loads says what went wrong
            return _NOT_HERE
