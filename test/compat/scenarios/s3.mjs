// @aws-sdk/client-s3 v3 against the fake S3: path style, static credentials, us-east-1; once with an
// IP endpoint, once with a fake host name resolved by the request handler's agent lookup.
import { Agent } from 'node:http';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { cfg, errorShape, runCases } from './lib.mjs';

function client(endpoint, extra = {}) {
  return new S3Client({
    endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDCOMPAT', secretAccessKey: 'compat-secret' },
    ...extra,
  });
}

async function roundTrip(s3, bucket) {
  const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'dir/a.txt', Body: 'hello s3' }));
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'dir/b.txt', Body: 'second' }));
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'dir/a.txt' }));
  const text = await got.Body.transformToString();
  const list = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'dir/' }));
  let missing;
  try {
    await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'dir/none.txt' }));
    missing = 'found';
  } catch (error) {
    missing = { name: error.name, status: error.$metadata?.httpStatusCode };
  }
  return {
    put: { status: put.$metadata.httpStatusCode, etag: put.ETag },
    get: { status: got.$metadata.httpStatusCode, body: text, contentType: got.ContentType },
    list: {
      status: list.$metadata.httpStatusCode,
      keys: (list.Contents ?? []).map((c) => c.Key),
      count: list.KeyCount,
    },
    missing,
  };
}

async function attempt(s3, bucket) {
  try {
    await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'dir/a.txt' }));
    return 'ok';
  } catch (error) {
    return { ...errorShape(error), attempts: error.$metadata?.attempts ?? null };
  }
}

await runCases({
  'IP endpoint round trip': async () => {
    const s3 = client(`http://127.0.0.1:${cfg.s3}`);
    try {
      return await roundTrip(s3, 'bucket-ip');
    } finally {
      s3.destroy();
    }
  },
  'fake host endpoint via agent lookup': async () => {
    const httpAgent = new Agent({ keepAlive: true, lookup: (await import('./lib.mjs')).fakeLookup });
    const s3 = client(`http://s3.compat.test:${cfg.s3}`, {
      requestHandler: new NodeHttpHandler({ httpAgent }),
    });
    try {
      return await roundTrip(s3, 'bucket-name');
    } finally {
      s3.destroy();
      httpAgent.destroy();
    }
  },
  // Denied runs look at how many attempts the default retry strategy made (error.$metadata.attempts).
  'default retry strategy (single GET)': async () => {
    const s3 = client(`http://127.0.0.1:${cfg.s3}`);
    try {
      return await attempt(s3, 'bucket-retry');
    } finally {
      s3.destroy();
    }
  },
});
