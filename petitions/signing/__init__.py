"""Signing a letter: the sign form, confirmation by link or code, withdrawal."""
