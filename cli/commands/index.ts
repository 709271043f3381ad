import type { Command } from '../command.js';

/** A command known by the words that select it; its module (and its dependencies) load only when it runs. */
export interface CommandEntry {
  path: readonly string[];
  load(): Promise<Command>;
}

export const commands: CommandEntry[] = [
  // policy kernel
  { path: ['keys', 'generate'], load: async () => (await import('./keys.js')).keysGenerateCommand },
  { path: ['keys', 'id'], load: async () => (await import('./keys.js')).keysIdCommand },
  { path: ['keys', 'public'], load: async () => (await import('./keys.js')).keysPublicCommand },
  { path: ['policy', 'check'], load: async () => (await import('./policy.js')).policyCheckCommand },
  { path: ['policy', 'explain'], load: async () => (await import('./policy.js')).policyExplainCommand },
  { path: ['policy', 'diff'], load: async () => (await import('./policy.js')).policyDiffCommand },
  {
    path: ['policy', 'suggest'],
    load: async () => (await import('./policy-suggest.js')).policySuggestCommand,
  },
  { path: ['policy', 'unused'], load: async () => (await import('./policy-unused.js')).policyUnusedCommand },
  { path: ['policy', 'schema'], load: async () => (await import('./policy.js')).policySchemaCommand },
  { path: ['blast-radius'], load: async () => (await import('./blast-radius.js')).blastRadiusCommand },
  { path: ['bundle', 'build'], load: async () => (await import('./bundle.js')).bundleBuildCommand },
  { path: ['bundle', 'verify'], load: async () => (await import('./bundle.js')).bundleVerifyCommand },
  { path: ['bundle', 'fetch'], load: async () => (await import('./bundle-fetch.js')).bundleFetchCommand },
  { path: ['shim', 'path'], load: async () => (await import('./shim.js')).shimPathCommand },
  // control API
  { path: ['control', 'serve'], load: async () => (await import('./control.js')).controlServeCommand },
  { path: ['token', 'create'], load: async () => (await import('./token.js')).tokenCreateCommand },
  { path: ['token', 'list'], load: async () => (await import('./token.js')).tokenListCommand },
  { path: ['token', 'revoke'], load: async () => (await import('./token.js')).tokenRevokeCommand },
  { path: ['apply'], load: async () => (await import('./apply.js')).applyCommand },
  { path: ['denies'], load: async () => (await import('./denies.js')).deniesCommand },
  { path: ['workloads'], load: async () => (await import('./workloads.js')).workloadsCommand },
  { path: ['revisions'], load: async () => (await import('./revisions.js')).revisionsCommand },
  { path: ['revisions', 'diff'], load: async () => (await import('./revisions.js')).revisionsDiffCommand },
  {
    path: ['revisions', 'restore'],
    load: async () => (await import('./revisions.js')).revisionsRestoreCommand,
  },
  // AWS Lambda
  { path: ['layer', 'build'], load: async () => (await import('./layer-build.js')).layerBuildCommand },
  { path: ['layer', 'publish'], load: async () => (await import('./layer-publish.js')).layerPublishCommand },
  { path: ['attach'], load: async () => (await import('./attach.js')).attachCommand },
];
