"""Bulkhead's egress shim for CPython."""
