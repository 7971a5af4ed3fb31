#!/usr/bin/env node
// A TLS peer for the interop tests, made of Node's tls module.
//
// Over TCP (127.0.0.1 only) it is tls.connect() or tls.createServer(); over
// its own standard input and output it is a TLSSocket over a Duplex: the
// client is tls.connect({socket: duplex}), the server
// new tls.TLSSocket(duplex, {isServer: true, secureContext}).
//
// After each handshake it sends the --send file, echoes what arrives with
// --echo, and ends its side (close_notify) once the other side has ended and
// its own bytes are out. Then it prints one line of JSON per connection on
// standard error (or --report-fd): see report() and describe().
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const tls = require('tls');
const { Duplex } = require('stream');

const USAGE = `usage: node-peer.js --client|--server --connect PORT|--listen PORT|--stdio [options]
  --min-version V, --max-version V   TLSv1.2, TLSv1.3
  --cert FILE --key FILE              own certificate and key (PEM)
  --ca FILE                           trust these CAs only
  --alpn P1,P2                        ALPN protocols
  --servername NAME                   client: SNI name and name to check
  --sni NAME:CERT:KEY                 server: a context for this name (repeatable)
  --request-cert, --require-cert      server: ask for / insist on a client certificate
  --insecure                          client: go on with an unverified server
  --no-tickets                        server: no session tickets (session ids instead)
  --psk IDENTITY:HEXKEY               a pre-shared key (TLS 1.2: PSK ciphers only)
  --ocsp FILE                         server: staple this DER OCSP response
  --request-ocsp                      client: ask for a stapled OCSP response
  --connections N                     connections in a row; a client resumes the last session
  --send FILE                         what to send after the handshake
  --echo                              send back what arrives
  --report-fd FD                      where the JSON lines go (default 2)`;

function parseArgs(argv) {
    const o = { connections: 1, sni: [], reportFd: 2 };
    const valued = {
        '--connect': (v) => { o.transport = 'tcp'; o.port = Number(v); },
        '--listen': (v) => { o.transport = 'tcp'; o.port = Number(v); },
        '--min-version': (v) => { o.minVersion = v; },
        '--max-version': (v) => { o.maxVersion = v; },
        '--cert': (v) => { o.cert = v; },
        '--key': (v) => { o.key = v; },
        '--ca': (v) => { o.ca = v; },
        '--alpn': (v) => { o.alpn = v.split(','); },
        '--servername': (v) => { o.servername = v; },
        '--sni': (v) => { o.sni.push(v.split(':')); },
        '--connections': (v) => { o.connections = Number(v); },
        '--send': (v) => { o.send = v; },
        '--report-fd': (v) => { o.reportFd = Number(v); },
        '--psk': (v) => {
            const [identity, hex] = v.split(':');
            o.psk = { identity, key: Buffer.from(hex, 'hex') };
        },
        '--ocsp': (v) => { o.ocsp = v; },
    };
    const flags = {
        '--client': () => { o.role = 'client'; },
        '--server': () => { o.role = 'server'; },
        '--stdio': () => { o.transport = 'stdio'; },
        '--request-cert': () => { o.requestCert = true; },
        '--require-cert': () => { o.requestCert = o.requireCert = true; },
        '--insecure': () => { o.insecure = true; },
        '--no-tickets': () => { o.noTickets = true; },
        '--echo': () => { o.echo = true; },
        '--request-ocsp': () => { o.requestOcsp = true; },
    };
    for (let i = 0; i < argv.length; i++) {
        if (flags[argv[i]])
            flags[argv[i]]();
        else if (valued[argv[i]] && i + 1 < argv.length)
            valued[argv[i]](argv[++i]);
        else
            usage(`bad argument: ${argv[i]}`);
    }
    if (!o.role || !o.transport)
        usage('need a role and a transport');
    if (o.transport === 'stdio' && o.connections !== 1)
        usage('--stdio carries one connection');
    return o;
}

function usage(msg) {
    process.stderr.write(`node-peer: ${msg}\n${USAGE}\n`);
    process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const read = (f) => (f ? fs.readFileSync(f) : undefined);

function report(fields) {
    const line = JSON.stringify({ peer: 'node', role: opts.role, ...fields });
    fs.writeSync(opts.reportFd, line + '\n');
}

// ---- the data phase, the same for every connection ------------------------

const toSend = opts.send ? fs.readFileSync(opts.send) : Buffer.alloc(0);

// Sends the file (once the handshake is done), echoes, counts and hashes
// what arrives. Calls result(r) once, as soon as it is known: before ending
// our side (so that a parent which stops us once the connection is over
// still gets it), or when the socket closes first; then closed() when it has
// closed. rawEnded() tells whether the transport under the TLS socket has
// already reported EOF (null when that cannot be seen).
function exchange(socket, rawEnded, result, closed) {
    const hash = crypto.createHash('sha256');
    const r = { received: 0, sent: 0, close_notify: null, error: null };
    let sending = toSend.length > 0, ended = false, told = false;

    const tell = () => {
        if (told)
            return;
        told = true;
        r.sha256 = hash.digest('hex');
        result(r);
    };
    const maybeEnd = () => {
        if (ended && !sending && socket.writable) {
            tell();
            socket.end();
        }
    };
    const pump = () => {
        while (r.sent < toSend.length) {
            const n = Math.min(65536, toSend.length - r.sent);
            const more = socket.write(toSend.subarray(r.sent, r.sent + n));
            r.sent += n;
            if (!more)
                return socket.once('drain', pump);
        }
        sending = false;
        maybeEnd();
    };
    socket.on('data', (chunk) => {
        hash.update(chunk);
        r.received += chunk.length;
        if (opts.echo && !socket.write(chunk)) {
            socket.pause();
            socket.once('drain', () => socket.resume());
        }
    });
    socket.on('end', () => {
        // A close_notify ends the TLS stream while the transport is still
        // open; a bare EOF of the transport ends both, the transport first.
        const raw = rawEnded();
        r.close_notify = raw === null ? null : !raw;
        ended = true;
        maybeEnd();
    });
    socket.on('error', (err) => { r.error = r.error || err.code || err.message; });
    socket.on('close', () => {
        tell();
        closed();
    });
    socket.once(opts.role === 'client' ? 'secureConnect' : 'secure', pump);
}

function describe(socket, staple) {
    const cert = socket.getPeerCertificate();
    const cipher = socket.getCipher();
    return {
        ocsp_sha256: staple ? crypto.createHash('sha256').update(staple).digest('hex') : undefined,
        protocol: socket.getProtocol(),
        cipher: cipher ? cipher.standardName : null,
        alpn: socket.alpnProtocol || null,
        servername: opts.role === 'server' ? socket.servername || null : undefined,
        authorized: socket.authorized,
        verify_error: socket.authorizationError || null,
        peer_cn: cert && cert.subject ? cert.subject.CN : null,
        resumed: socket.isSessionReused(),
    };
}

// ---- transports -------------------------------------------------------------

// Standard input and output as one Duplex: stdin is read as a stream, and
// stdout is written through its own fd stream so that ending it closes fd 1.
// exit() waits until what was written to stdout is out (the close_notify last).
function stdioDuplex() {
    const state = { ended: false };
    process.stdin.on('end', () => { state.ended = true; });
    const out = fs.createWriteStream(null, { fd: 1 });
    const duplex = Duplex.from({ readable: process.stdin, writable: out });
    const exit = () => {
        out.once('close', () => process.exit(0));
        out.end();
        setTimeout(() => process.exit(0), 2000).unref();
    };
    return { duplex, rawEnded: () => state.ended, exit };
}

// Node's default list ends with !PSK. And Node's PSK callbacks (OpenSSL's
// SSL_set_psk_*_callback) bind the key to SHA-256: a TLS 1.3 server that
// picks its first suite, TLS_AES_256_GCM_SHA384, drops the PSK and answers
// with its certificate instead.
const PSK_CIPHERS = 'TLS_AES_128_GCM_SHA256:PSK-AES128-GCM-SHA256:ECDHE-PSK-AES128-CBC-SHA256';

function contextOptions() {
    return {
        minVersion: opts.minVersion, maxVersion: opts.maxVersion,
        cert: read(opts.cert), key: read(opts.key), ca: read(opts.ca),
        secureOptions: opts.noTickets ? crypto.constants.SSL_OP_NO_TICKET : 0,
        ciphers: opts.psk ? PSK_CIPHERS : undefined,
    };
}

// ---- client -------------------------------------------------------------------

function client() {
    let session;
    let left = opts.connections;
    const once = () => {
        const base = {
            ...contextOptions(),
            servername: opts.servername,
            ALPNProtocols: opts.alpn,
            rejectUnauthorized: !opts.insecure,
            allowHalfOpen: true,
            session,
            requestOCSP: !!opts.requestOcsp,
            pskCallback: opts.psk ? () => ({ psk: opts.psk.key, identity: opts.psk.identity })
                                  : undefined,
            // Node checks the server's name even when a PSK suite brought no
            // certificate (its own PSK tests turn the check off too).
            checkServerIdentity: opts.psk ? () => undefined : tls.checkServerIdentity,
        };
        let socket, io;
        if (opts.transport === 'tcp') {
            socket = tls.connect({ ...base, host: '127.0.0.1', port: opts.port });
            // TLSWrap reads the TCP handle itself: its EOF cannot be seen.
            io = { rawEnded: () => null, exit: () => process.exit(0) };
        } else {
            io = stdioDuplex();
            socket = tls.connect({ ...base, socket: io.duplex });
        }
        let info = null, staple = null;
        socket.on('session', (s) => { session = s; });
        socket.on('OCSPResponse', (der) => { staple = der; });
        socket.on('secureConnect', () => { info = describe(socket, staple); });
        exchange(socket, io.rawEnded, (r) => {
            report(info ? { ok: !r.error, ...info, ...r } : { ok: false, error: r.error });
        }, () => {
            if (--left > 0)
                once();
            else
                io.exit();
        });
    };
    once();
}

// ---- server -------------------------------------------------------------------

function serverOptions() {
    const contexts = opts.sni.map(([name, cert, key]) =>
        [name, tls.createSecureContext({ ...contextOptions(), cert: read(cert), key: read(key) })]);
    return {
        ...contextOptions(),
        requestCert: !!opts.requestCert,
        rejectUnauthorized: !!opts.requireCert,
        ALPNProtocols: opts.alpn,
        allowHalfOpen: true,
        pskCallback: opts.psk ? (socket, id) => (id === opts.psk.identity ? opts.psk.key : null)
                              : undefined,
        contexts,
    };
}

// tls.Server over TCP: Node checks client certificates and destroys a
// connection it refuses; that connection's socket is seen through 'keylog'
// (emitted during the handshake) so that it is reported too.
function tcpServer() {
    const so = serverOptions();
    const server = tls.createServer(so);
    for (const [name, ctx] of so.contexts)
        server.addContext(name, ctx);
    // Node's server keeps no session cache itself: these events are one.
    const sessions = new Map();
    server.on('newSession', (id, data, cb) => { sessions.set(id.toString('hex'), data); cb(); });
    server.on('resumeSession', (id, cb) => cb(null, sessions.get(id.toString('hex')) || null));
    if (opts.ocsp)
        server.on('OCSPRequest', (cert, issuer, cb) => cb(null, read(opts.ocsp)));

    let left = opts.connections;
    const finished = () => {
        if (--left === 0) {
            server.close();
            process.exit(0);
        }
    };
    const seen = new Set(), errors = new Map();
    server.on('keylog', (line, socket) => {
        if (seen.has(socket))
            return;
        seen.add(socket);
        let info = null;
        // Node's own 'secure' listener has already judged the certificate.
        socket.on('secure', () => { if (!socket.destroyed) info = describe(socket); });
        exchange(socket, () => null, (r) => {
            const error = r.error || errors.get(socket) || 'closed in handshake';
            report(info ? { ok: !r.error, ...info, ...r }
                        : { ok: false, error, authorized: socket.authorized,
                            verify_error: socket.authorizationError });
        }, finished);
    });
    // A handshake that fails: for a socket seen above, its 'close' reports.
    server.on('tlsClientError', (err, socket) => {
        if (seen.has(socket)) {
            errors.set(socket, err.code || err.message);
        } else {
            report({ ok: false, error: err.code || err.message });
            finished();
        }
    });
    server.listen(opts.port, '127.0.0.1', () => {
        report({ listening: server.address().port });
    });
}

// A TLSSocket over stdin/stdout. Unlike tls.Server, a bare TLSSocket does not
// check the client's certificate after the handshake: this does it as
// tls.Server would (authorizationError from the verify result, refusal with
// --require-cert).
function stdioServer() {
    const so = serverOptions();
    const secureContext = tls.createSecureContext(so);
    const SNICallback = so.contexts.length ? (name, cb) => {
        const hit = so.contexts.find(([n]) => n === name);
        cb(null, hit ? hit[1] : secureContext);
    } : undefined;
    const io = stdioDuplex();
    const socket = new tls.TLSSocket(io.duplex, {
        isServer: true, secureContext, SNICallback,
        requestCert: so.requestCert, rejectUnauthorized: so.rejectUnauthorized,
        ALPNProtocols: so.ALPNProtocols, pskCallback: so.pskCallback,
    });
    socket.allowHalfOpen = true;
    let info = null;
    socket.on('secure', () => {
        if (so.requestCert) {
            const err = socket.ssl.verifyError();
            socket.authorized = !err;
            socket.authorizationError = err ? err.code : null;
        }
        info = describe(socket);
        if (so.rejectUnauthorized && !socket.authorized)
            socket.destroy();
    });
    exchange(socket, io.rawEnded, (r) => {
        const ok = !!info && !r.error && (socket.authorized || !so.rejectUnauthorized);
        report({ ok, ...info, ...r });
    }, io.exit);
}

if (opts.role === 'client')
    client();
else if (opts.transport === 'tcp')
    tcpServer();
else
    stdioServer();
