/* The interop cases of keylog (interop.h). */
#include "config.h"

#include "interop.h"

void ix_register_keylog(void)
{
}
