#ifndef C_MALLOC_TUNING_H
#define C_MALLOC_TUNING_H

#if __has_include(<malloc.h>)
#include <malloc.h>
#endif

/// Caps the number of glibc malloc arenas (a no-op on other C libraries).
static inline void foundry_batch_limit_malloc_arenas(int count) {
#if defined(__GLIBC__) && defined(M_ARENA_MAX)
    mallopt(M_ARENA_MAX, count);
#else
    (void)count;
#endif
}

#endif
