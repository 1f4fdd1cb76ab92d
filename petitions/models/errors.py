"""Domain exceptions raised by model transitions and services."""


class DomainError(Exception):
    """A rule of the product was broken; the message is safe to show to the user."""


class InvalidTransition(DomainError):
    """A state change that the current state does not allow."""
