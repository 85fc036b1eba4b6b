// The header's inline function is the whole module; a C target needs one source file.
#include "CMallocTuning.h"
