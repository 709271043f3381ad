'use strict';
// AWS Lambda: no Bulkhead code at all — the layer (exec wrapper + extension + preload) governs it.
const { checkout } = require('../shared/checkout.cjs');

exports.handler = async (_event, context) => ({
  cloud: 'aws',
  invocationId: context.awsRequestId,
  results: await checkout(),
});
