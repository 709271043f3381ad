"""Stand-in for the managed Python runtime's /var/runtime/bootstrap.py (python3.12, python3.13): the
function folder first on sys.path, then AWS's runtime interface client with the handler named by the
`_HANDLER` environment variable, as read when the interpreter starts. Reading it here, not from the
command line, is what lets an exec wrapper redirect the handler (Bulkhead's, Datadog's and
OpenTelemetry's layers do), as on Lambda."""

import os
import sys

task_root = os.environ.get('LAMBDA_TASK_ROOT', os.getcwd())
# The script's own folder is sys.path[0] (this emulator's); Lambda's is /var/runtime, nothing of the
# function's. The function folder goes first, as bootstrap.py puts it.
sys.path[0] = task_root

from awslambdaric.__main__ import main  # noqa: E402  (after sys.path is set up)

main([sys.argv[0], os.environ['_HANDLER']])
