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
    };
    const char *env = getenv("IX_NODE");
    if (env && *env)
        node.program = env;
    ix_peer(node.name, (const char *const[]){node.program, "-p",
                                              "`Node.js ${process.version}, OpenSSL "
                                              "${process.versions.openssl}`",
                                              NULL});
    sp_register(&node);
}
