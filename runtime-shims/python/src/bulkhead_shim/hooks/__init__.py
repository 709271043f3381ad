"""Interception points: the PEP 578 audit hook and the wrappers where a hook lacks L7 facts."""
