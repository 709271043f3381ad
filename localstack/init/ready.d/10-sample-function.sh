#!/bin/bash
# Runs inside LocalStack once it is ready: creates the sample function (without Bulkhead; the
# deploy service attaches the layer with `bulkhead attach`, as on AWS).
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp /opt/bulkhead-sample/index.mjs "$work/"
(cd "$work" && python3 -m zipfile -c function.zip index.mjs)
awslocal iam create-role --role-name bulkhead-sample \
  --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}' \
  >/dev/null
awslocal lambda create-function --function-name bulkhead-sample \
  --runtime nodejs20.x --handler index.handler --timeout 30 \
  --role arn:aws:iam::000000000000:role/bulkhead-sample \
  --zip-file "fileb://$work/function.zip" \
  --tags app=sample,env=local >/dev/null
awslocal lambda wait function-active-v2 --function-name bulkhead-sample
echo "bulkhead: sample function created"
