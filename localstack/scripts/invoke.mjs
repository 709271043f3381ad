// Invokes a function (endpoint from AWS_ENDPOINT_URL) and prints its answer and log tail.
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';

const functionName = process.argv[2];
if (!functionName) {
  console.error('usage: node localstack/scripts/invoke.mjs FUNCTION');
  process.exit(2);
}
const client = new LambdaClient({});
const answer = await client.send(new InvokeCommand({ FunctionName: functionName, LogType: 'Tail' }));
console.log(new TextDecoder().decode(answer.Payload));
if (answer.LogResult) console.log(Buffer.from(answer.LogResult, 'base64').toString('utf8'));
if (answer.FunctionError) process.exitCode = 1;
