/* mix.h — the integration programs' deterministic hash (a splitmix64 finaliser). */
#ifndef ZSWAPU_IT_MIX_H
#define ZSWAPU_IT_MIX_H

#include <stdint.h>

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ULL;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dULL;
	return x ^ (x >> 33);
}

#endif
