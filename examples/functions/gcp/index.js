// Google Cloud functions (functions framework): wrap the handler; the wrapper keeps its arity and
// delivers deny records before the response ends.
import functions from '@google-cloud/functions-framework';
import { http } from 'bulkhead/gcp';
import shared from '../shared/checkout.cjs';

functions.http(
  'charge',
  http(async (req, res) => {
    res.json({ cloud: 'gcp', invocationId: req.executionId, results: await shared.checkout() });
  }),
);
