import type { Command } from '../command.js';
import { attachCommand } from './attach.js';
import { layerBuildCommand } from './layer-build.js';
import { layerPublishCommand } from './layer-publish.js';

// Each part of Bulkhead adds its commands here.
export const commands: Command[] = [layerBuildCommand, layerPublishCommand, attachCommand];
