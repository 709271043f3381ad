#!/usr/bin/env bash
# Runs in the `deploy` container (repository mounted at /app): creates tokens, applies the sample
# policy, builds and publishes the layer into LocalStack, attaches it to the sample function with
# the same commands used on AWS, and invokes the function twice.
set -euo pipefail
cd /app
cli=(node dist/cli.mjs)
: "${BULKHEAD_CONTROL:?}" "${BULKHEAD_DB:?}" "${BULKHEAD_OUT:?}"

echo "== waiting for the control API"
for _ in $(seq 1 60); do
  node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
    "$BULKHEAD_CONTROL/healthz" && break
  sleep 1
done

echo "== tokens"
BULKHEAD_TOKEN=$("${cli[@]}" token create --scope admin --db "$BULKHEAD_DB")
export BULKHEAD_TOKEN
BULKHEAD_WORKLOAD_TOKEN=$("${cli[@]}" token create --scope workload --db "$BULKHEAD_DB")
export BULKHEAD_WORKLOAD_TOKEN

echo "== policy"
"${cli[@]}" apply localstack/policy.yaml --control "$BULKHEAD_CONTROL"

echo "== layer (control URL and the control API's public key baked in)"
zip="$BULKHEAD_OUT/bulkhead-layer.zip"
"${cli[@]}" keys public --control "$BULKHEAD_CONTROL" > "$BULKHEAD_OUT/trusted-key.pem"
"${cli[@]}" layer build --out "$zip" --control "$BULKHEAD_CONTROL" --trusted-key "$BULKHEAD_OUT/trusted-key.pem"
layer_arn=$("${cli[@]}" layer publish --region "$AWS_REGION" --zip "$zip")

echo "== attach"
"${cli[@]}" attach bulkhead-sample --layer "$layer_arn" --control "$BULKHEAD_CONTROL" \
  --token-env BULKHEAD_WORKLOAD_TOKEN --wait

echo "== invoke"
node localstack/scripts/invoke.mjs bulkhead-sample
node localstack/scripts/invoke.mjs bulkhead-sample
"${cli[@]}" denies --control "$BULKHEAD_CONTROL"
