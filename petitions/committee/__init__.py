"""A letter's organizing committee: roles, invitations, the two-person rule and the log."""
