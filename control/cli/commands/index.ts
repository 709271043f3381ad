import type { Command } from '../command.js';
import { applyCommand } from './apply.js';
import { attachCommand } from './attach.js';
import { bundleBuildCommand, bundleVerifyCommand } from './bundle.js';
import { controlServeCommand } from './control.js';
import { deniesCommand } from './denies.js';
import { keysGenerateCommand, keysIdCommand } from './keys.js';
import { layerBuildCommand } from './layer-build.js';
import { layerPublishCommand } from './layer-publish.js';
import {
  policyCheckCommand,
  policyDiffCommand,
  policyExplainCommand,
  policySchemaCommand,
} from './policy.js';
import { tokenCreateCommand } from './token.js';
import { workloadsCommand } from './workloads.js';

// Each part of Bulkhead adds its commands here.
export const commands: Command[] = [
  layerBuildCommand,
  layerPublishCommand,
  attachCommand,
  // policy kernel
  keysGenerateCommand,
  keysIdCommand,
  policyCheckCommand,
  policyExplainCommand,
  policyDiffCommand,
  policySchemaCommand,
  bundleBuildCommand,
  bundleVerifyCommand,
  // control API
  controlServeCommand,
  tokenCreateCommand,
  applyCommand,
  deniesCommand,
  workloadsCommand,
];
