"""Delivering a letter: targets, the pack, receipt, response, outcome and the timeline."""
