/* The interop cases of gnutls (interop.h). */
#include "config.h"

#include "interop.h"

void ix_register_gnutls(void)
{
}
