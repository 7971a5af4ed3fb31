/*
 * Fuzz target: session bytes from outside. The input is what a client
 * application hands to dx_tls_set_session() (a session it kept) and what
 * a server's external session store answers a lookup with
 * (dx_tls_session_found()): both decode it, and a client offering it
 * makes a handshake with a server whose store gives it back. Seeds are
 * real sessions (tests/fuzz/record.c).
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_ep s, c;
    memset(&s, 0, sizeof(s));
    memset(&c, 0, sizeof(c));
    s.keep_out = c.keep_out = 1;
    fz_now_ms = 1000;
    fz_streams_reset();
    fz_server_open(&s, FZ_SRV_STORE, FZ_ACT_ECHO);
    fz_store_set(data, size);
    fz_use_stream(1);
    fz_client_open(&c, 0, FZ_ACT_HELLO | FZ_ACT_END, data, size);
    fz_exchange(&s, &c, 1, NULL, NULL);
    fz_ep_close(&c);
    fz_use_stream(0);
    fz_ep_close(&s);
    return 0;
}
