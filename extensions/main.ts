// Entry of dist/extension.cjs, started by the layer's extensions/bulkhead launcher.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runExtension } from './extension.js';

const layerDir = dirname(fileURLToPath(import.meta.url));

process.on('uncaughtException', (error) => {
  // Exiting would be a crash (the platform resets the sandbox): log and keep serving.
  process.stderr.write(`[bulkhead-extension] unexpected error: ${error.stack ?? error.message}\n`);
});

runExtension({ env: process.env, layerDir }).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`[bulkhead-extension] fatal: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
