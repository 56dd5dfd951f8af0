/* The C ABI, include/llamette.h, as it is: an installed copy (found through
 * pkg-config's llamette.pc, see bindings/c/install.sh, or the compiler's
 * default paths) or else the one in this checkout. */
#if __has_include(<llamette.h>)
#include <llamette.h>
#else
#include "../../../../include/llamette.h"
#endif
