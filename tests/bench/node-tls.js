'use strict';
// The Node.js side of dxbench (tests/bench/bench.c): the same handshake,
// bulk and ping-pong measurements, over two TLSSockets joined by an
// in-memory Duplex pair, in one process.
//
// Usage: node node-tls.js DIR
// DIR holds ca-ec.pem, ca-rsa.pem, ec.pem, ec.key, rsa.pem and rsa.key,
// read at start. The script then says "ready" and answers, one line each,
// the commands it reads on standard input:
//   full ec|rsa SECS          full handshakes per second
//   resumed SECS              resumed handshakes (tickets) per second
//   bulk SUITE SIZE SECS      cleartext bytes per second, SIZE-byte writes
//   pingpong SECS             64-byte round trips per second
//   quit
// SUITE: aes128, aes256 or chacha. TLS 1.3 and X25519 throughout, as in
// the C program.

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const tls = require('tls');
const { Duplex } = require('stream');

const dir = process.argv[2];
const read = (name) => fs.readFileSync(path.join(dir, name));
const pem = {
  ca: [read('ca-ec.pem'), read('ca-rsa.pem')],
  ec: { cert: read('ec.pem'), key: read('ec.key') },
  rsa: { cert: read('rsa.pem'), key: read('rsa.key') },
};

const suites = {
  aes128: 'TLS_AES_128_GCM_SHA256',
  aes256: 'TLS_AES_256_GCM_SHA384',
  chacha: 'TLS_CHACHA20_POLY1305_SHA256',
};

const base = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ecdhCurve: 'X25519' };
const contexts = new Map();
function context(server, key, suite) {
  const name = `${server}/${key}/${suite}`;
  if (!contexts.has(name)) {
    const opts = { ...base, ciphers: suites[suite] };
    if (server) Object.assign(opts, pem[key]);
    else opts.ca = pem.ca;
    contexts.set(name, tls.createSecureContext(opts));
  }
  return contexts.get(name);
}

// Two Duplex streams: what one writes, the other reads.
function duplexPair() {
  const ends = [];
  for (let i = 0; i < 2; i++) {
    ends.push(new Duplex({
      read() {},
      write(chunk, encoding, callback) {
        ends[1 - i].push(chunk);
        callback();
      },
      final(callback) {
        ends[1 - i].push(null);
        callback();
      },
    }));
  }
  return ends;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

// A connected client and server; resolves once both are secure.
function connect(key, suite, session) {
  return new Promise((resolve, reject) => {
    const [a, b] = duplexPair();
    const server = new tls.TLSSocket(b, {
      isServer: true,
      secureContext: context(true, key, suite),
    });
    const client = tls.connect({
      socket: a,
      secureContext: context(false, key, suite),
      servername: 'localhost',
      session,
    });
    let secure = 0;
    const done = () => {
      if (++secure === 2) resolve({ client, server });
    };
    server.once('secure', done);
    client.once('secureConnect', done);
    server.once('error', reject);
    client.once('error', reject);
  });
}

function close({ client, server }) {
  client.destroy();
  server.destroy();
}

async function full(key, secs) {
  let n = 0;
  const t0 = now();
  let t;
  do {
    close(await connect(key, 'aes128'));
    n++;
  } while ((t = now()) - t0 < secs);
  return n / (t - t0);
}

let ticket = null;
async function resumed(secs) {
  if (!ticket) {
    const c = await connect('ec', 'aes128');
    ticket = await new Promise((resolve) => c.client.once('session', resolve));
    close(c);
  }
  let n = 0;
  const t0 = now();
  let t;
  do {
    const c = await connect('ec', 'aes128', ticket);
    if (!c.client.isSessionReused()) throw new Error('the session did not resume');
    close(c);
    n++;
  } while ((t = now()) - t0 < secs);
  return n / (t - t0);
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));

async function bulk(suite, size, secs) {
  const c = await connect('ec', suite);
  let rx = 0;
  c.server.on('data', (d) => { rx += d.length; });
  const buf = Buffer.alloc(size, 'x');
  let tx = 0;
  const t0 = now();
  while (now() - t0 < secs) {
    // Stay within a megabyte of the reader, as backpressure would.
    for (let i = 0; i < 16 && tx - rx < (1 << 20); i++) {
      c.client.write(buf);
      tx += size;
    }
    await yieldToLoop();
  }
  while (rx < tx) await yieldToLoop();
  const rate = rx / (now() - t0);
  close(c);
  return rate;
}

async function pingpong(secs) {
  const c = await connect('ec', 'aes128');
  c.server.on('data', (d) => c.server.write(d));
  const msg = Buffer.alloc(64, 'p');
  const rate = await new Promise((resolve) => {
    let n = 0, got = 0;
    const t0 = now();
    c.client.on('data', (d) => {
      got += d.length;
      while (got >= 64) {
        got -= 64;
        n++;
        // the clock is read every 128 round trips, as the C side does
        if (n % 128 === 0) {
          const t = now();
          if (t - t0 >= secs) {
            resolve(n / (t - t0));
            return;
          }
        }
        c.client.write(msg);
      }
    });
    c.client.write(msg);
  });
  close(c);
  return rate;
}

async function run(line) {
  const [cmd, ...args] = line.trim().split(/\s+/);
  switch (cmd) {
    case 'full': return full(args[0], Number(args[1]));
    case 'resumed': return resumed(Number(args[0]));
    case 'bulk': return bulk(args[0], Number(args[1]), Number(args[2]));
    case 'pingpong': return pingpong(Number(args[0]));
    default: throw new Error(`unknown command: ${line}`);
  }
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin });
  process.stdout.write('ready\n');
  for await (const line of rl) {
    if (line.trim() === 'quit') break;
    if (!line.trim()) continue;
    const rate = await run(line);
    process.stdout.write(`${rate}\n`);
  }
  rl.close();
}

main().catch((err) => {
  process.stderr.write(`node-tls.js: ${err.stack || err}\n`);
  process.exit(1);
});
