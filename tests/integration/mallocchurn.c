/*
 * mallocchurn — glibc malloc driven hard, every block checked: threads
 * allocate, grow, shrink and free blocks of 16 bytes to 4 MiB with malloc,
 * calloc and realloc, and check each block's contents before they touch it
 * again.  That drives what a real program's heap does to the memory zswapu
 * manages and the synthetic tortures do not: brk growth and trimming of the
 * main arena (sbrk down unmaps the top of a registered region, sbrk up maps
 * fresh memory at the same addresses), the per-thread arenas' heaps grown by
 * mprotect and shrunk with MADV_DONTNEED, and malloc's own mmap/munmap for
 * large blocks.  calloc'd memory must read zero (glibc skips the memset on
 * memory fresh from the kernel, so a stale page would show here), and the
 * allocator's chunk headers live in the same pages: a lost write corrupts
 * the heap and glibc aborts.
 *
 * Deterministic: each thread has its own seed and its own blocks, so the
 * output (a hash of every byte checked and the mismatch count) is the same
 * natively and under zswapu.  Exit status 1 on the first mismatch, with
 * where it was on stderr.
 *
 *   mallocchurn THREADS LIVE_MIB OPS_PER_THREAD
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mix.h"

#define SLOTS 4096

struct block {
	uint64_t *p;
	size_t words;   /* size in 8-byte words */
	uint64_t tag;   /* what each word is derived from */
};

struct worker {
	int id;
	size_t budget;  /* bytes live at most */
	long ops;
	uint64_t hash;
	long checked;
	pthread_t t;
};

/*
 * Word i of a block: mostly repeats (a heap compresses 2-4:1, so the pages
 * are stored rather than rejected), with the tag and the word's index in
 * every 8th word so that a page from elsewhere never matches.
 */
static uint64_t word(uint64_t tag, size_t i)
{
	return (i & 7) ? 0x2020202020202020ULL + (i & 7) : tag ^ (i * 0x9e3779b97f4a7c15ULL);
}

static void fill(struct block *b, size_t from)
{
	for (size_t i = from; i < b->words; i++)
		b->p[i] = word(b->tag, i);
}

static void check(struct worker *w, const struct block *b, size_t words, const char *what)
{
	for (size_t i = 0; i < words; i++) {
		uint64_t want = word(b->tag, i);
		if (b->p[i] != want) {
			fprintf(stderr,
				"mallocchurn: thread %d: %s block %p (%zu bytes) word %zu at %p: "
				"got %#llx, want %#llx\n",
				w->id, what, (void *)b->p, b->words * 8, i, (void *)&b->p[i],
				(unsigned long long)b->p[i], (unsigned long long)want);
			exit(1);
		}
	}
	w->hash = mix(w->hash ^ b->tag ^ words);
	w->checked += (long)words;
}

/* Sizes as a heap sees them: mostly small, some pages, a few huge ones. */
static size_t pick_words(uint64_t r)
{
	unsigned k = r % 100;
	r >>= 8;
	if (k < 70)
		return 2 + r % 64;              /* 16 B - 528 B */
	if (k < 92)
		return 64 + r % 4096;           /* to 33 KiB */
	if (k < 99)
		return 4096 + r % 32768;        /* to 288 KiB: around the mmap threshold */
	return 32768 + r % 491520;              /* to 4 MiB */
}

static void *run(void *arg)
{
	struct worker *w = arg;
	struct block *s = calloc(SLOTS, sizeof(*s));
	uint64_t rng = mix((uint64_t)w->id + 1), seq = 0;
	size_t live = 0;

	if (!s) {
		perror("mallocchurn: calloc");
		exit(2);
	}
	for (long op = 0; op < w->ops; op++) {
		rng = mix(rng + (uint64_t)op);
		struct block *b = &s[rng % SLOTS];
		uint64_t r = rng >> 12;

		/* Now and then drop everything: the heap trims, arenas shrink. */
		if (op % 20011 == 20010) {
			for (int i = 0; i < SLOTS; i++) {
				if (s[i].p) {
					check(w, &s[i], s[i].words, "freed");
					free(s[i].p);
					s[i].p = NULL;
				}
			}
			live = 0;
			continue;
		}
		if (b->p) {
			check(w, b, b->words, "live");
			if (r % 3 == 0) {
				size_t nw = pick_words(mix(r));
				uint64_t *np;
				if (live - b->words * 8 + nw * 8 > w->budget)
					nw = b->words / 2 + 1;
				np = realloc(b->p, nw * 8);
				if (!np) {
					perror("mallocchurn: realloc");
					exit(2);
				}
				live = live - b->words * 8 + nw * 8;
				b->p = np;
				check(w, b, nw < b->words ? nw : b->words, "realloc'd");
				b->words = nw;
				b->tag = mix(b->tag + 1);
				fill(b, 0);
			} else {
				free(b->p);
				live -= b->words * 8;
				b->p = NULL;
			}
			continue;
		}
		b->words = pick_words(r);
		if (live + b->words * 8 > w->budget)
			continue;
		b->tag = mix(((uint64_t)w->id << 48) ^ ++seq);
		if (r & 1) {
			b->p = calloc(b->words, 8);
			if (b->p) {
				for (size_t i = 0; i < b->words; i++) {
					if (b->p[i]) {
						fprintf(stderr,
							"mallocchurn: thread %d: calloc'd block %p "
							"(%zu bytes) word %zu is %#llx, not zero\n",
							w->id, (void *)b->p, b->words * 8, i,
							(unsigned long long)b->p[i]);
						exit(1);
					}
				}
			}
		} else {
			b->p = malloc(b->words * 8);
		}
		if (!b->p) {
			perror("mallocchurn: malloc");
			exit(2);
		}
		live += b->words * 8;
		fill(b, 0);
	}
	for (int i = 0; i < SLOTS; i++) {
		if (s[i].p) {
			check(w, &s[i], s[i].words, "at end");
			free(s[i].p);
		}
	}
	free(s);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: mallocchurn THREADS LIVE_MIB OPS_PER_THREAD\n");
		return 2;
	}
	int n = atoi(argv[1]);
	size_t mib = strtoull(argv[2], NULL, 10);
	long ops = atol(argv[3]);
	if (n < 1 || n > 64 || !mib || ops < 1) {
		fprintf(stderr, "mallocchurn: bad arguments\n");
		return 2;
	}
	struct worker *w = calloc((size_t)n, sizeof(*w));
	if (!w)
		return 2;
	uint64_t hash = 0;
	long checked = 0;
	/* Thread 0 is the main thread: the main arena (brk) is exercised too. */
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){ .id = i, .budget = (mib << 20) / (size_t)n, .ops = ops };
		if (i && pthread_create(&w[i].t, NULL, run, &w[i])) {
			perror("mallocchurn: pthread_create");
			return 2;
		}
	}
	run(&w[0]);
	for (int i = 0; i < n; i++) {
		if (i)
			pthread_join(w[i].t, NULL);
		hash = mix(hash ^ w[i].hash);
		checked += w[i].checked;
	}
	printf("threads %d ops %ld words checked %ld hash %016llx mismatches 0\n", n, ops,
	       checked, (unsigned long long)hash);
	free(w);
	return 0;
}
