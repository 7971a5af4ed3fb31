#!/usr/bin/env python3
"""A TLS peer for the interop tests, made of Python's ssl module.

Over TCP (127.0.0.1 only) it is an ssl.SSLSocket; over its own standard
input and output it is an ssl.SSLObject between two ssl.MemoryBIOs, whose
encrypted bytes it carries itself.

After each handshake it sends the --send file, echoes what arrives with
--echo, reads until the other side ends, then ends its own side with
close_notify. Then it prints one line of JSON per connection on standard
error (or --report-fd).
"""
import argparse
import hashlib
import json
import os
import socket
import ssl
import sys

VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def parse_args():
    p = argparse.ArgumentParser(prog="python-peer.py")
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("--client", action="store_true")
    role.add_argument("--server", action="store_true")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", type=int, metavar="PORT")
    where.add_argument("--listen", type=int, metavar="PORT")
    where.add_argument("--stdio", action="store_true")
    p.add_argument("--min-version", choices=VERSIONS)
    p.add_argument("--max-version", choices=VERSIONS)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--ca")
    p.add_argument("--alpn", help="P1,P2")
    p.add_argument("--servername")
    p.add_argument("--sni", action="append", default=[], metavar="NAME:CERT:KEY")
    p.add_argument("--request-cert", action="store_true")
    p.add_argument("--require-cert", action="store_true")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--no-tickets", action="store_true")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--send", metavar="FILE")
    p.add_argument("--echo", action="store_true")
    p.add_argument("--report-fd", type=int, default=2)
    o = p.parse_args()
    if o.stdio and o.connections != 1:
        p.error("--stdio carries one connection")
    return o


opts = parse_args()
ROLE = "client" if opts.client else "server"
TO_SEND = open(opts.send, "rb").read() if opts.send else b""


def report(**fields):
    line = json.dumps({"peer": "python", "role": ROLE, **fields}, separators=(",", ":")) + "\n"
    os.write(opts.report_fd, line.encode())


# ---- contexts ------------------------------------------------------------------


def make_context(cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT if opts.client else ssl.PROTOCOL_TLS_SERVER)
    if opts.min_version:
        ctx.minimum_version = VERSIONS[opts.min_version]
    if opts.max_version:
        ctx.maximum_version = VERSIONS[opts.max_version]
    if cert or opts.cert:
        ctx.load_cert_chain(cert or opts.cert, key or opts.key)
    if opts.ca:
        ctx.load_verify_locations(opts.ca)
    if opts.alpn:
        ctx.set_alpn_protocols(opts.alpn.split(","))
    # On by default in Python's contexts (3.11 here): a bare EOF would pass
    # for a close_notify.
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    if opts.client and opts.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.server:
        if opts.require_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif opts.request_cert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
        if opts.no_tickets:
            ctx.options |= ssl.OP_NO_TICKET
    return ctx


class Server:
    """The server's context, its SNI contexts, and the name each client asked for."""

    def __init__(self):
        self.context = make_context()
        self.by_name = {}
        for spec in opts.sni:
            name, cert, key = spec.split(":")
            self.by_name[name] = make_context(cert, key)
        self.servername = None
        self.context.sni_callback = self.choose

    def choose(self, conn, name, _ctx):
        self.servername = name
        if name in self.by_name:
            conn.context = self.by_name[name]


# ---- one connection's exchange, over either transport -------------------------


def exchange(conn, send, recv):
    """Sends the file, then reads (echoing) until the other side ends.
    recv() returns b"" on close_notify and raises ssl.SSLEOFError on a bare
    EOF. Returns the result fields."""
    r = {"sent": 0, "received": 0, "close_notify": False, "error": None}
    digest = hashlib.sha256()
    try:
        out = memoryview(TO_SEND)
        while r["sent"] < len(out):
            send(out[r["sent"]:r["sent"] + 65536])
            r["sent"] = min(r["sent"] + 65536, len(out))
        while True:
            data = recv()
            if not data:
                r["close_notify"] = True
                break
            digest.update(data)
            r["received"] += len(data)
            if opts.echo:
                send(data)
    except ssl.SSLEOFError:
        pass
    except (ssl.SSLError, OSError) as e:
        r["error"] = error_name(e)
    r["sha256"] = digest.hexdigest()
    return r


def describe(conn, server=None):
    cert = conn.getpeercert() or {}
    cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
    if opts.client:
        authorized = None if opts.insecure else True  # verification failure ends the handshake
    else:
        authorized = bool(cert) if (opts.request_cert or opts.require_cert) else False
    return {
        "protocol": conn.version(),
        "cipher": conn.cipher()[0],
        "alpn": conn.selected_alpn_protocol(),
        "servername": server.servername if server else None,
        "authorized": authorized,
        "peer_cn": cn,
        "resumed": conn.session_reused,
    }


def error_name(e):
    return getattr(e, "reason", None) or type(e).__name__


def handshake_failed(e):
    fields = {"ok": False, "error": error_name(e)}
    if isinstance(e, ssl.SSLCertVerificationError):
        fields.update(verify_code=e.verify_code, verify_error=e.verify_message)
    report(**fields)


# ---- TCP: SSLSocket ------------------------------------------------------------------


def over_socket(conn, server=None):
    """Handshake, exchange and close on a connected SSLSocket; returns its
    session (which closing forgets)."""
    try:
        conn.do_handshake()
    except (ssl.SSLError, OSError) as e:
        handshake_failed(e)
        conn.close()
        return None
    info = describe(conn, server)

    def recv():
        return conn.recv(65536)

    r = exchange(conn, conn.sendall, recv)
    session = conn.session
    if r["close_notify"]:
        try:
            conn.unwrap()  # sends our close_notify
        except (ssl.SSLError, OSError) as e:
            r["error"] = r["error"] or error_name(e)
    report(ok=r["error"] is None, **info, **r)
    conn.close()
    return session


def tcp_client():
    ctx = make_context()
    session = None
    hostname = opts.servername or "127.0.0.1"  # an address: no SNI, its IP is checked
    for _ in range(opts.connections):
        raw = socket.create_connection(("127.0.0.1", opts.connect))
        conn = ctx.wrap_socket(raw, server_hostname=hostname, session=session,
                               do_handshake_on_connect=False, suppress_ragged_eofs=False)
        session = over_socket(conn) or session


def tcp_server():
    server = Server()
    lsock = socket.create_server(("127.0.0.1", opts.listen))
    report(listening=lsock.getsockname()[1])
    for _ in range(opts.connections):
        raw, _addr = lsock.accept()
        server.servername = None
        conn = server.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False,
                                          suppress_ragged_eofs=False)
        over_socket(conn, server)
    lsock.close()


# ---- stdio: SSLObject over MemoryBIO ------------------------------------------------------


def stdio():
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = None
    if opts.client:
        conn = make_context().wrap_bio(incoming, outgoing,
                                       server_hostname=opts.servername or "127.0.0.1")
    else:
        server = Server()
        conn = server.context.wrap_bio(incoming, outgoing, server_side=True)

    def flush():
        data = outgoing.read()
        while data:
            data = data[os.write(1, data):]

    def fill():
        data = os.read(0, 65536)
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()

    def until_done(op, *args):
        """Runs op, carrying bytes both ways while it wants to read."""
        while True:
            try:
                result = op(*args)
                flush()
                return result
            except ssl.SSLWantReadError:
                flush()
                fill()

    def send(data):
        until_done(conn.write, data)

    def recv():
        try:
            return until_done(conn.read, 65536)
        except ssl.SSLZeroReturnError:
            return b""

    try:
        until_done(conn.do_handshake)
    except (ssl.SSLError, OSError) as e:
        flush()  # the alert
        handshake_failed(e)
        return
    info = describe(conn, server)
    r = exchange(conn, send, recv)
    if r["close_notify"]:
        try:
            until_done(conn.unwrap)  # sends our close_notify
        except (ssl.SSLError, OSError) as e:
            r["error"] = r["error"] or error_name(e)
    # Before the end of our output, after which a parent may stop us.
    report(ok=r["error"] is None, **info, **r)
    os.close(1)


if opts.stdio:
    stdio()
elif opts.client:
    tcp_client()
else:
    tcp_server()
