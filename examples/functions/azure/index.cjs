'use strict';
// Azure Functions (Node.js programming model v4): one call sets Bulkhead up for every function.
const { app } = require('@azure/functions');
const { setupBulkhead } = require('bulkhead/azure');
const { checkout } = require('../shared/checkout.cjs');

setupBulkhead(app);

app.http('charge', {
  methods: ['POST'],
  authLevel: 'anonymous',
  handler: async (_request, context) => ({
    jsonBody: { cloud: 'azure', invocationId: context.invocationId, results: await checkout() },
  }),
});
