/*
 * Fuzz target: a TLS client fed arbitrary bytes on its encrypted side. The
 * input is a header (options, actions, chunk size: see fuzz.h) and the
 * bytes a server would send, handed over in chunks; the client answers, runs
 * its callbacks and actions, and is torn down.
 */
#include "config.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run_endpoint(DX_TLS_CLIENT, data, size);
    return 0;
}
