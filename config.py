"""Configuration classes, read from the environment.

Every variable is documented in README.md. Only development and testing have built-in
secrets; production refuses to start without its own.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_PATH", BASE_DIR / "instance"))


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


class Config:
    """Production settings: everything secret must come from the environment."""

    ENV_NAME = "production"
    SECRET_KEY = os.environ.get("SECRET_KEY")
    SECRET_KEY_FALLBACKS = _list("SECRET_KEY_FALLBACKS")
    #: key for the keyed hash that replaces a signer's address; separate from SECRET_KEY
    ADDRESS_HASH_KEY = os.environ.get("ADDRESS_HASH_KEY")
    #: key of the personal-address store (AES-GCM and its keyed hash); never in the database
    UPDATES_KEY = os.environ.get("UPDATES_KEY")
    DATABASE_URL = (
        os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'undersigned.sqlite3'}"
    )
    PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
    TOKEN_MAX_AGE = int(os.environ.get("TOKEN_MAX_AGE", str(7 * 24 * 3600)))
    CODE_MAX_ATTEMPTS = int(os.environ.get("CODE_MAX_ATTEMPTS", "5"))
    COUNTER_SHARDS = int(os.environ.get("COUNTER_SHARDS", "8"))
    #: verified signatures from a letter's employer domains before it is listed (index, feed, API)
    LISTING_THRESHOLD = int(os.environ.get("LISTING_THRESHOLD", "5"))

    SMTP_HOST = os.environ.get("SMTP_HOST", "127.0.0.1")
    SMTP_PORT = int(os.environ.get("SMTP_PORT", "25"))
    SMTP_USERNAME = os.environ.get("SMTP_USERNAME") or None
    SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD") or None
    SMTP_STARTTLS = _bool("SMTP_STARTTLS")
    SMTP_TIMEOUT = float(os.environ.get("SMTP_TIMEOUT", "10"))
    MAIL_FROM = os.environ.get("MAIL_FROM", "Undersigned <no-reply@undersigned.invalid>")
    MAIL_BATCH_SIZE = int(os.environ.get("MAIL_BATCH_SIZE", "200"))
    MAIL_RETRY_BASE = float(os.environ.get("MAIL_RETRY_BASE", "30"))
    MAIL_RETRY_MAX = float(os.environ.get("MAIL_RETRY_MAX", "600"))
    MAIL_RETRY_FOR = float(os.environ.get("MAIL_RETRY_FOR", str(2 * 24 * 3600)))
    #: subscribers whose update email the worker opens and queues at a time; the next batch
    #: waits until this one has left the outbox, so few addresses are ever there in clear
    UPDATES_BATCH_SIZE = int(os.environ.get("UPDATES_BATCH_SIZE", "200"))

    #: Flask-Limiter storage: memory:// for one process, redis://host:6379 to share across workers
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_ENABLED = _bool("RATELIMIT_ENABLED", True)
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "undersigned")
    #: how many proxies in front of the app set X-Forwarded-For; 0 trusts none
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
    #: a sign form sent back sooner than this after it was shown is refused (bots)
    SIGN_MIN_SECONDS = float(os.environ.get("SIGN_MIN_SECONDS", "2"))
    #: DNS server ("ip:port") asked for the DKIM keys of messages signers send; empty: the system's
    DKIM_NAMESERVER = os.environ.get("DKIM_NAMESERVER", "")
    #: seconds a DKIM key lookup may take before the signer is asked to try again
    DKIM_DNS_TIMEOUT = float(os.environ.get("DKIM_DNS_TIMEOUT", "5"))

    DEV_MAILBOX = False
    DEV_MAILBOX_DIR = str(INSTANCE_DIR / "mailbox")

    MAX_CONTENT_LENGTH = 256 * 1024
    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"


class DevelopmentConfig(Config):
    """Local development: built-in secrets and the in-browser mailbox."""

    ENV_NAME = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-secret-key-not-for-production")
    ADDRESS_HASH_KEY = os.environ.get("ADDRESS_HASH_KEY", "dev-only-address-hash-key")
    #: derived from the development secret, so every dev process opens what another sealed
    UPDATES_KEY = (
        os.environ.get("UPDATES_KEY")
        or hashlib.sha256(f"updates:{SECRET_KEY}".encode()).hexdigest()
    )
    DEV_MAILBOX = True


class TestingConfig(Config):
    """Settings for the test suite; tests override DATABASE_URL and SMTP_PORT."""

    __test__ = False  # not a pytest test class
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "test-secret-key"  # noqa: S105 - tests only
    ADDRESS_HASH_KEY = "test-address-hash-key"
    UPDATES_KEY = "test-updates-key-never-used-outside-the-test-suite"
    DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "sqlite://")
    # Otherwise production's defaults (rate limits on, caching headers), except that tests
    # retry mail at once and send a form back at machine speed (the bot tests turn that on).
    MAIL_RETRY_BASE = 0.0
    SIGN_MIN_SECONDS = 0.0
    # Tests read the index, feed and API right after publishing; the review tests
    # (tests/test_listing_review.py) set the threshold back.
    LISTING_THRESHOLD = 0


CONFIGS: dict[str, type[Config]] = {
    "production": Config,
    "development": DevelopmentConfig,
    "testing": TestingConfig,
}


def config_from_env() -> Config:
    """Pick the configuration class named by UNDERSIGNED_ENV (default production)."""
    name = os.environ.get("UNDERSIGNED_ENV", "production")
    return CONFIGS.get(name, Config)()
