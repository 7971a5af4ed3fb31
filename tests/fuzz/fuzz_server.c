/*
 * Fuzz target: a TLS server fed arbitrary bytes on its encrypted side. The
 * input is a header (options, actions, chunk size: see fuzz.h) and the
 * bytes a client would send, handed over in chunks; the server answers, runs
 * its callbacks and actions, and is torn down.
 */
#include "config.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run_endpoint(DX_TLS_SERVER, data, size);
    return 0;
}
