// `node --import bulkhead/register` (dist/register.mjs): loads the CommonJS preload next to it,
// so the ESM and CJS entry points share one installation and one copy of the hooks.
import { createRequire } from 'node:module';

createRequire(import.meta.url)('./register.cjs');
