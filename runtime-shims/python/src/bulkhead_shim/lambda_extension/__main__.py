"""The extension's entry (`python3 -I -S`, the layer's folders first on sys.path). Only what Register
needs is imported before it: the runtime's init waits for Register, nothing else."""

import os
import sys
import time

started = time.monotonic()

from .register import RegisterError, register  # noqa: E402  (after the clock starts)


def _main() -> int:
    env = os.environ
    runtime_api = env.get('AWS_LAMBDA_RUNTIME_API')
    if not runtime_api:
        sys.stderr.write(
            '[bulkhead-extension] AWS_LAMBDA_RUNTIME_API is not set: not running inside Lambda\n'
        )
        return 1
    state_dir = env.get('BULKHEAD_STATE_DIR') or '/tmp/bulkhead'
    # The shim waits for this file at its first decision: a stale one (a reset re-launches this
    # process in the same /tmp) must be gone before the runtime can start, i.e. before Register.
    try:  # noqa: SIM105  (contextlib costs start-up time)
        os.unlink(os.path.join(state_dir, 'extension-status.json'))
    except OSError:
        pass
    try:
        extension_id, answer = register(runtime_api, env.get('BULKHEAD_EXTENSION_NAME') or 'bulkhead')
    except RegisterError as error:
        sys.stderr.write(f'[bulkhead-extension] {error}\n')
        return 1
    from .main import run

    return run(env, env.get('BULKHEAD_LAYER_DIR', '/opt/bulkhead'), started, extension_id, answer)


sys.exit(_main())
