"""The Bulkhead Lambda extension for Python runtimes (python3.12, python3.13), which have no `node` for
the Node extension (`extensions/`). Same contract (docs/contracts.md §6), same state files, same order:

1. Register first, with nothing imported but `socket` (register.py): Lambda starts the runtime only
   once every extension has registered, so anything done before Register is cold start.
2. Then, while the runtime initialises: fetch and verify the workload's bundle for the identity Register
   completed (the account id), else the sandbox's last good one in /tmp, else the one baked into the
   layer, else none (the fail mode); write it atomically where the shim reads it, then the status file
   the shim waits for at its first decision (bounded): the bundle is verified before the function's
   first connection, without the runtime's start waiting for the network. Then long-poll on a thread.
3. INVOKE: nothing on the network before `next`. New revisions arrive by the long-poll (the thread
   reads an answer the moment the sandbox thaws); deny records are forwarded by a thread that watches
   the spool, so a clean warm invocation gets no billed time from this process.
4. SHUTDOWN: forward what is left within the budget and exit 0. No other exit: Lambda counts it a crash.
"""
