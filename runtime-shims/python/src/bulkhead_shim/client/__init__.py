"""Talking to the control API without an extension in between: the bundle client (fetch, verify,
keep the last good bundle, long-poll) shared by the Lambda extension for Python runtimes and the
Azure and GCP wrappers. Standard library and the kernel only."""
