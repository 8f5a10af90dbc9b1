/*
 * hotcold — a program with two allocation sites for the profiler's
 * end-to-end test (tests/profile/run.sh): cold_site() allocates memory
 * that is written once and never read again, hot_site() memory that
 * hot_touch() keeps reading and writing.  Under a limit the cold memory
 * should be what is compressed, and the hot memory what faults back.
 * The hot blocks and every 64th cold block are checked at the end: exit
 * 1 if a byte is wrong.
 *
 *   hotcold [hot_mib cold_mib rounds]   (defaults 16 64 6)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOCK (64 * 1024)

/* Compressible, but not one value (that would be stored without data). */
static void fill(unsigned char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i / 64 + seed) % 23);
}

__attribute__((noinline, noclone)) unsigned char *cold_site(unsigned int seed)
{
	unsigned char *p = malloc(BLOCK);
	if (p)
		fill(p, BLOCK, seed);
	return p;
}

__attribute__((noinline, noclone)) unsigned char *hot_site(unsigned int seed)
{
	unsigned char *p = malloc(BLOCK);
	if (p)
		fill(p, BLOCK, seed);
	return p;
}

/* One pass over the hot blocks: read a byte per page, add 1 to another. */
__attribute__((noinline, noclone)) uint64_t hot_touch(unsigned char **hot, size_t n)
{
	uint64_t sum = 0;
	for (size_t b = 0; b < n; b++)
		for (size_t off = 0; off < BLOCK; off += 4096) {
			sum += hot[b][off];
			hot[b][off + 1]++;
		}
	return sum;
}

static int check(unsigned char *p, unsigned int seed, unsigned int bumps)
{
	for (size_t i = 0; i < BLOCK; i++) {
		unsigned char want = (unsigned char)((i / 64 + seed) % 23);
		if (i % 4096 == 1)
			want = (unsigned char)(want + bumps);
		if (p[i] != want)
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	size_t hot_mib = argc > 3 ? strtoul(argv[1], NULL, 10) : 16;
	size_t cold_mib = argc > 3 ? strtoul(argv[2], NULL, 10) : 64;
	unsigned int rounds = argc > 3 ? (unsigned int)strtoul(argv[3], NULL, 10) : 6;
	size_t nh = hot_mib * 1024 * 1024 / BLOCK, nc = cold_mib * 1024 * 1024 / BLOCK;
	unsigned char **hot = calloc(nh, sizeof(*hot)), **cold = calloc(nc, sizeof(*cold));
	if (!hot || !cold)
		return 2;
	for (size_t i = 0; i < nh; i++)
		if (!(hot[i] = hot_site((unsigned int)i)))
			return 2;
	for (size_t i = 0; i < nc; i++)
		if (!(cold[i] = cold_site((unsigned int)(i + 7))))
			return 2;
	uint64_t sum = 0;
	for (unsigned int r = 0; r < rounds; r++) {
		sum += hot_touch(hot, nh);
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	int bad = 0;
	for (size_t i = 0; i < nh; i++)
		bad |= check(hot[i], (unsigned int)i, rounds);
	/* a sparse check of the cold blocks: reading them all would fault
	 * them all back, which is not what the test is about */
	for (size_t i = 0; i < nc; i += 64)
		bad |= check(cold[i], (unsigned int)(i + 7), 0);
	printf("hotcold: %zu MiB hot, %zu MiB cold, %u rounds, sum %llu, %s\n", hot_mib, cold_mib,
	       rounds, (unsigned long long)sum, bad ? "CORRUPT" : "ok");
	return bad;
}
