"""Offline generators of exact-label edit triples."""
