#!/bin/sh
# Lambda handler for the control API: aws-lambda-web-adapter's /opt/bootstrap runs this script,
# waits until GET /healthz answers on $PORT, then forwards every request to it.
set -eu
umask 077
state=/tmp/bulkhead
mkdir -p "$state"
# Secrets come from Secrets Manager at start, never from the template or the environment.
node "$LAMBDA_TASK_ROOT/fetch-secrets.cjs" "$state"
# From the environment rather than the command line, where the password would show in `ps`.
BULKHEAD_DATABASE_URL=$(cat "$state/database-url")
export BULKHEAD_DATABASE_URL
# Loopback only: the adapter (and its readiness check) reaches the API on 127.0.0.1.
exec node "$LAMBDA_TASK_ROOT/dist/cli.mjs" control serve --host 127.0.0.1 --port "${PORT:-8080}" --key "$state/signing.key"
