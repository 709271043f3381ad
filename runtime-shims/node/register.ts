// `node --require bulkhead/register` (dist/register.cjs, self-contained): enforcement is in place
// before any application code runs.
import { preload } from './index.js';

preload();
