"""Email: queued in the outbox with the change it reports, rendered and sent by the worker."""

from petitions.mail.outbox import queue_email

__all__ = ["queue_email"]
