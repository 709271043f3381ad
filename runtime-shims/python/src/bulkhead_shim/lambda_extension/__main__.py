"""`python -m bulkhead_shim.lambda_extension`; the layer's launcher runs `bulkhead_extension.py` instead
(the same call, with the layer's folders on sys.path under `python -I`)."""

import os
import sys
import time

from .main import run

sys.exit(run(os.environ, os.environ.get('BULKHEAD_LAYER_DIR', '/opt/bulkhead'), time.monotonic()))
