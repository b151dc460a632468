/* netproxy: being written. */
#include "netproxy.h"
