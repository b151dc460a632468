/* sweeper: being written; see sweeper.h. */
#include "sweeper.h"
