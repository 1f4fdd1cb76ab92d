"""Accounts: register, log in, confirm, reset and change an organizer's account."""
