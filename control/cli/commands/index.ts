import type { Command } from '../command.js';

// Each part of Bulkhead adds its commands here.
export const commands: Command[] = [];
