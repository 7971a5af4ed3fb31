/* The interop cases of Node.js's tls module (peers/node-peer.js, scripted.h). */
#include "config.h"

#include <stdlib.h>

#include "interop.h"
#include "scripted.h"

void ix_register_node(void)
{
    static sp_peer node = {
        .name = "node",
        .program = "node",
        .script = "node-peer.js",
        .tcp_client = "tls.connect",
        .tcp_server = "tls.Server",
        .stdio_client = "tls.connect(duplex)",
        .stdio_server = "TLSSocket(duplex)",
        .no_close_notify_tcp = "over TCP its TLSSocket emits 'end' alike for a close_notify "
                               "and a bare EOF, and the TCP handle is read by the TLS layer, "
                               "out of sight",
        .no_tls13_session_cache = "tls.Server looks sessions up ('resumeSession') by the "
                                  "ClientHello's legacy session id, but a TLS 1.3 session "
                                  "without tickets is named by its PSK identity: stored "
                                  "('newSession'), never found",
        .no_ocsp_stdio_server = "a TLSSocket made without a tls.Server has no 'OCSPRequest' "
                                "event to answer: it never staples",
    };
    const char *env = getenv("IX_NODE");
    if (env && *env)
        node.program = env;
    ix_peer(node.name, (const char *const[]){node.program, "-p",
                                              "`Node.js ${process.version}, OpenSSL "
                                              "${process.versions.openssl}`",
                                              NULL});
    sp_register(&node);
    /* The PSK cases run its server with TLS_AES_128_GCM_SHA256 alone (see
     * node-peer.js); with its default suites it does this: */
    ix_unsupported(node.name, IX_LIB " → tls.Server",
                   "TLS 1.3, TCP: PSK, the server's default cipher suites",
                   "its PSK callbacks bind the key to SHA-256, and tls.Server, picking "
                   "TLS_AES_256_GCM_SHA384 first, drops the PSK and answers with its "
                   "certificate");
}
