"""The Bulkhead Lambda extension for Python runtimes (python3.12, python3.13), which have no `node` for
the Node extension (`extensions/`). Same contract (docs/contracts.md §6), same state files, same order:

1. Before Register: fetch and verify the workload's bundle (bounded), else the sandbox's last good one
   in /tmp, else the one baked into the layer, else the fail mode; write it atomically where the shim
   reads it; publish the local endpoint's URL for the exec wrapper. Lambda starts the runtime only once
   every extension has registered, so the bundle is on disk before the function's first line runs.
2. Register (INVOKE, SHUTDOWN; the accountId feature), then long-poll the control API on a thread.
3. INVOKE: nothing on the network before `next`. New revisions arrive by the long-poll (the thread
   reads an answer the moment the sandbox thaws); deny records are forwarded by a thread that watches
   the spool, so a clean warm invocation gets no billed time from this process.
4. SHUTDOWN: forward what is left within the budget and exit 0. No other exit: Lambda counts it a crash.
"""
