// Publish the layer zip (from `bulkhead layer build`) as a Lambda layer version in one region.
// Re-running with the same zip reuses the newest version when its description carries the same
// sha256, so "publish once per region" loops are safe to repeat.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import {
  type Architecture,
  type LambdaClient,
  ListLayerVersionsCommand,
  PublishLayerVersionCommand,
  type Runtime,
} from '@aws-sdk/client-lambda';
import { LAYER_RUNTIMES } from './build.js';
import type { LayerArch } from './python-deps.js';

export const COMPATIBLE_RUNTIMES = LAYER_RUNTIMES as Runtime[];
export const DEFAULT_LAYER_NAME = 'bulkhead';
/** Lambda's limit for a layer uploaded in the request body (larger ones must come from S3). */
export const MAX_DIRECT_UPLOAD_BYTES = 50 * 1024 * 1024;
const LAYER_NAME = /^[a-zA-Z0-9-_]{1,64}$/;
const SHA256_IN_DESCRIPTION = /\bsha256:([0-9a-f]{64})\b/;

export interface PublishOptions {
  client: LambdaClient;
  /** Path of the layer zip, or its bytes. */
  zip: string | Uint8Array;
  layerName?: string | undefined;
  /** Free text put before the hash in the layer description. */
  label?: string | undefined;
  /** Publish a new version even when the newest one has the same sha256. */
  force?: boolean | undefined;
  onProgress?: ((message: string) => void) | undefined;
  /** The architecture the layer was built for (`bulkhead layer build --arch`); default x86_64. */
  architecture?: LayerArch | undefined;
}

export interface PublishResult {
  layerVersionArn: string;
  version: number;
  sha256: string;
  size: number;
  /** True when an existing version with the same content was reused. */
  reused: boolean;
}

export class PublishError extends Error {
  override readonly name = 'PublishError';
}

export function checkLayerName(name: string): string {
  if (!LAYER_NAME.test(name))
    throw new PublishError(
      `layer name '${name}' is invalid: 1-64 characters of letters, digits, '-' and '_'`,
    );
  return name;
}

function formatBytes(size: number): string {
  return size >= 1024 * 1024 ? `${(size / 1024 / 1024).toFixed(2)} MiB` : `${(size / 1024).toFixed(1)} KiB`;
}

async function readZip(zip: string | Uint8Array): Promise<Uint8Array> {
  if (typeof zip !== 'string') return zip;
  let size: number;
  try {
    size = (await stat(zip)).size;
  } catch (error) {
    throw new PublishError(
      `cannot read layer zip ${zip}: ${(error as Error).message} (build it with bulkhead layer build)`,
    );
  }
  if (size > MAX_DIRECT_UPLOAD_BYTES)
    throw new PublishError(`${zip} is ${formatBytes(size)}: larger than the 50 MiB direct upload limit`);
  return readFile(zip);
}

export async function publishLayer(options: PublishOptions): Promise<PublishResult> {
  const progress = options.onProgress ?? (() => undefined);
  const layerName = checkLayerName(options.layerName ?? DEFAULT_LAYER_NAME);
  const bytes = await readZip(options.zip);
  if (bytes.length > MAX_DIRECT_UPLOAD_BYTES)
    throw new PublishError(
      `layer zip is ${formatBytes(bytes.length)}: larger than the 50 MiB direct upload limit`,
    );
  // A zip starts with a local file header (PK\x03\x04); catching a wrong file here beats a vague API error.
  if (bytes.length < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b || bytes[2] !== 0x03 || bytes[3] !== 0x04)
    throw new PublishError('layer file is not a zip archive');
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  progress(`layer zip: ${formatBytes(bytes.length)}, sha256 ${sha256}`);

  if (!options.force) {
    progress(`checking existing versions of ${layerName}`);
    const listed = await options.client.send(
      new ListLayerVersionsCommand({ LayerName: layerName, MaxItems: 1 }),
    );
    const newest = listed.LayerVersions?.[0];
    const newestHash = newest?.Description ? SHA256_IN_DESCRIPTION.exec(newest.Description)?.[1] : undefined;
    if (newest?.LayerVersionArn && newest.Version !== undefined && newestHash === sha256) {
      progress(`version ${newest.Version} already has this content: reusing it`);
      return {
        layerVersionArn: newest.LayerVersionArn,
        version: newest.Version,
        sha256,
        size: bytes.length,
        reused: true,
      };
    }
  }

  const label = (options.label ?? 'Bulkhead egress containment').slice(0, 150);
  progress(`uploading ${formatBytes(bytes.length)} as a new version of ${layerName}`);
  const published = await options.client.send(
    new PublishLayerVersionCommand({
      LayerName: layerName,
      Description: `${label} sha256:${sha256}`,
      Content: { ZipFile: bytes },
      CompatibleRuntimes: COMPATIBLE_RUNTIMES,
      // One architecture per layer: the Python side carries native wheels (layers/python-deps.ts).
      CompatibleArchitectures: [(options.architecture ?? 'x86_64') as Architecture],
      LicenseInfo: 'Apache-2.0',
    }),
  );
  if (!published.LayerVersionArn || published.Version === undefined)
    throw new PublishError('Lambda answered without a layer version ARN');
  progress(`published ${published.LayerVersionArn}`);
  return {
    layerVersionArn: published.LayerVersionArn,
    version: published.Version,
    sha256,
    size: bytes.length,
    reused: false,
  };
}
