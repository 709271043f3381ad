"""The decision kernel, ported from policy/ (TypeScript). The conformance table proves they agree."""
