// Reads the control API's secrets from Secrets Manager (ARNs in BULKHEAD_SIGNING_KEY_SECRET and
// BULKHEAD_DATABASE_URL_SECRET) and writes them, mode 0600, into the directory given as argument.
// The AWS SDK v3 ships with the Lambda Node.js runtimes, so nothing extra is packaged.
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { GetSecretValueCommand, SecretsManagerClient } = require('@aws-sdk/client-secrets-manager');

const [dir] = process.argv.slice(2);
const wanted = [
  ['BULKHEAD_SIGNING_KEY_SECRET', 'signing.key'],
  ['BULKHEAD_DATABASE_URL_SECRET', 'database-url'],
];

async function main() {
  if (!dir) throw new Error('usage: fetch-secrets.cjs DIR');
  const client = new SecretsManagerClient({});
  for (const [variable, file] of wanted) {
    const secretId = process.env[variable];
    if (!secretId) throw new Error(`${variable} is not set`);
    const answer = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
    if (typeof answer.SecretString !== 'string' || answer.SecretString === '')
      throw new Error(`secret named by ${variable} has no SecretString`);
    writeFileSync(join(dir, file), answer.SecretString, { mode: 0o600 });
  }
}

main().catch((error) => {
  // The message names the variable, never the secret's value.
  console.error(`fetch-secrets: ${error.message}`);
  process.exit(1);
});
