"""Verbs about instance types and prices: catalog."""
