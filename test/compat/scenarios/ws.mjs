// ws 8: connect + echo, wss with SNI and a CA, createConnection option, ws+unix:, permessage-deflate.
import { connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import { cfg, fakeLookup, runCases } from './lib.mjs';

/** Open, read the server's hello, send two messages, read the echoes, close. */
function session(url, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    const received = [];
    ws.on('error', reject);
    ws.on('message', (data) => {
      const text = data.toString();
      received.push(text.startsWith('{') ? JSON.parse(text) : text);
      if (received.length === 1) {
        ws.send('one');
        ws.send('x'.repeat(2000));
      }
      if (received.length === 3) ws.close(1000, 'done');
    });
    ws.on('close', (code) =>
      resolve({
        code,
        hello: received[0],
        echoes: received
          .slice(1)
          .map((m) => (typeof m === 'string' && m.length > 40 ? `${m.slice(0, 10)}…(${m.length})` : m)),
        extensions: ws.extensions || 'none',
      }),
    );
  });
}

await runCases({
  'connect + echo': () => session(`ws://127.0.0.1:${cfg.http}/plain`, { perMessageDeflate: false }),
  'localhost name': () => session(`ws://localhost:${cfg.http}/plain`, { perMessageDeflate: false }),
  'perMessageDeflate on': () => session(`ws://127.0.0.1:${cfg.http}/deflate`, { perMessageDeflate: true }),
  'wss with SNI + ca': () =>
    session(`wss://localhost:${cfg.https}/plain`, { ca: cfg.ca, servername: 'localhost' }),
  'wss IP URL with servername': () =>
    session(`wss://127.0.0.1:${cfg.https}/plain`, { ca: cfg.ca, servername: 'localhost' }),
  'createConnection option': () =>
    session(`ws://created.compat.test:${cfg.http}/plain`, {
      perMessageDeflate: false,
      createConnection: (opts) => netConnect({ ...opts, host: '127.0.0.1' }),
    }),
  'lookup option (fake name)': () =>
    session(`ws://api.compat.test:${cfg.http}/plain`, { perMessageDeflate: false, lookup: fakeLookup }),
  'custom Host header': () =>
    session(`ws://127.0.0.1:${cfg.http}/plain`, {
      perMessageDeflate: false,
      headers: { host: 'api.compat.test' },
    }),
  'ws+unix socket': () => session(`ws+unix:${cfg.wsUnix}:/plain`, { perMessageDeflate: false }),
  'ws+unix socket deflate': () => session(`ws+unix:${cfg.wsUnix}:/deflate`),
});
