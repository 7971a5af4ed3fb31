/* The interop cases of curl (interop.h). */
#include "config.h"

#include "interop.h"

void ix_register_curl(void)
{
}
