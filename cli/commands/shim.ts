// bulkhead shim path: where the in-process shims live, for a preload or PYTHONPATH outside Lambda.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../layers/build.js';
import { type Command, EXIT_FAILURE, EXIT_OK, UsageError } from '../command.js';

const usage = `Usage: bulkhead shim path --python | --node

--python  the folder that, first on PYTHONPATH, makes CPython (3.10+) load the shim at start-up
          (its sitecustomize.py):  PYTHONPATH="$(bulkhead shim path --python)\${PYTHONPATH:+:$PYTHONPATH}"
--node    the preload for node --require (or NODE_OPTIONS)

Both read the same environment: BULKHEAD_BUNDLE_FILE, BULKHEAD_TRUSTED_KEYS, BULKHEAD_WORKLOAD,
BULKHEAD_REPORT (spool file or http(s) URL, with BULKHEAD_TOKEN), BULKHEAD_FAIL_MODE.`;

export const shimPathCommand: Command = {
  path: ['shim', 'path'],
  summary: 'Print where the Python shim folder (--python) or the Node preload (--node) is',
  usage,
  options: { python: { type: 'boolean' }, node: { type: 'boolean' } },
  async run(args, io) {
    const python = args.values.python === true;
    const node = args.values.node === true;
    if (python === node) throw new UsageError('give one of --python or --node');
    const root = packageRoot();
    const path = python ? join(root, 'runtime-shims', 'python', 'src') : join(root, 'dist', 'register.cjs');
    const marker = python ? join(path, 'sitecustomize.py') : path;
    if (!existsSync(marker)) {
      io.err(`bulkhead shim path: ${marker} is missing from this installation`);
      return EXIT_FAILURE;
    }
    io.out(path);
    return EXIT_OK;
  },
};
