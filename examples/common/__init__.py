"""Helpers shared by the example scripts (subset lists, ...)."""
