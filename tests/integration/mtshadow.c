/*
 * mtshadow — a multi-threaded workload that checks its own memory: four
 * threads each own a slice of a large heap array of pages and rewrite
 * random pages of it, checking each page against a shadow sequence number
 * before rewriting it.  Deterministic: the same arguments give the same
 * output (a hash of the final memory and the mismatch count), so a run
 * under zswapu must print exactly what a native run prints.
 *
 *   mtshadow MIB OPS_PER_THREAD
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mix.h"

#define PAGE 4096
#define THREADS 4

static uint8_t *mem;
static uint64_t *shadow;
static size_t npages;
static long ops;

/* Text-like content, so that it compresses as a heap would. */
static void fill(uint8_t *p, size_t page, uint64_t seq)
{
	static const char *const words[16] = {
		"alpha ", "beta ", "gamma ", "delta ", "epsilon ", "zeta ", "eta ", "theta ",
		"iota ", "kappa ", "lambda ", "mu ", "nu ", "xi ", "omicron ", "pi ",
	};
	uint64_t h = mix(page * 1000003 + seq);
	int n = snprintf((char *)p, 64, "page %zu seq %llu: ", page, (unsigned long long)seq);
	while (n < PAGE - 16) {
		const char *w = words[h & 15];
		size_t l = strlen(w);
		memcpy(p + n, w, l);
		n += (int)l;
		h = h >> 4 ? h >> 4 : mix(h + (uint64_t)n);
	}
	memset(p + n, '.', PAGE - n);
}

static int same(const uint8_t *p, size_t page, uint64_t seq)
{
	uint8_t ref[PAGE];
	fill(ref, page, seq);
	return memcmp(p, ref, PAGE) == 0;
}

static long bad[THREADS];

static void *worker(void *arg)
{
	long id = (long)arg;
	size_t lo = npages * id / THREADS, hi = npages * (id + 1) / THREADS;
	uint64_t s = mix(id + 1);
	for (long i = 0; i < ops; i++) {
		s = mix(s);
		/* 90 % of the touches go to the first tenth of the slice */
		size_t span = (s >> 40) % 10 ? (hi - lo) / 10 : hi - lo;
		size_t pg = lo + (s >> 8) % (span ? span : 1);
		if (!same(mem + pg * PAGE, pg, shadow[pg]))
			bad[id]++;
		shadow[pg]++;
		fill(mem + pg * PAGE, pg, shadow[pg]);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: mtshadow MIB OPS_PER_THREAD\n");
		return 2;
	}
	npages = (size_t)atol(argv[1]) * 256;
	ops = atol(argv[2]);
	mem = malloc(npages * PAGE);
	shadow = calloc(npages, sizeof(*shadow));
	if (!mem || !shadow) {
		fprintf(stderr, "mtshadow: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < npages; i++)
		fill(mem + i * PAGE, i, 0);
	pthread_t t[THREADS];
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	long total = 0;
	for (long i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		total += bad[i];
	}
	uint64_t h = 0;
	for (size_t i = 0; i < npages; i++) {
		if (!same(mem + i * PAGE, i, shadow[i]))
			total++;
		h = mix(h ^ shadow[i] ^ mem[i * PAGE + 100]);
	}
	printf("pages %zu ops %ld mismatches %ld hash %016llx\n", npages, ops * THREADS, total,
	       (unsigned long long)h);
	return total ? 1 : 0;
}
