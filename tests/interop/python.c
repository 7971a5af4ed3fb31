/* The interop cases of Python's ssl module (peers/python-peer.py, scripted.h). */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "interop.h"
#include "scripted.h"

void ix_register_python(void)
{
    /* $IX_PYTHON, or Debian's python3, whose ssl module is linked with the
     * system's OpenSSL, rather than whichever python3 comes first in PATH. */
    static sp_peer python = {
        .name = "python",
        .program = "python3",
        .script = "python-peer.py",
        .tcp_client = "SSLSocket",
        .tcp_server = "SSLSocket server",
        .stdio_client = "SSLObject",
        .stdio_server = "SSLObject server",
        .no_psk = "its ssl module has no pre-shared keys before Python 3.13",
        .no_ocsp = "its ssl module has no OCSP stapling, neither for SSLSocket nor for "
                   "SSLObject",
    };
    const char *env = getenv("IX_PYTHON");
    if (env && *env)
        python.program = env;
    else if (access("/usr/bin/python3", X_OK) == 0)
        python.program = "/usr/bin/python3";
    ix_peer(python.name,
            (const char *const[]){python.program, "-c",
                                  "import ssl, sys; print('Python', sys.version.split()[0] + ',',"
                                  " ssl.OPENSSL_VERSION)",
                                  NULL});
    sp_register(&python);
}
