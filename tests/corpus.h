/*
 * corpus — test pages: real heap pages from ../shared/data/pages and
 * synthetic pages of known kinds.  Header-only (static functions) so every
 * test file that needs pages includes it.
 *
 * Real pages: corpus_load("python", &n) returns a malloc'd buffer of n raw
 * 4 KiB pages (4096 per corpus) read through `xz -dc`, from the directory
 * $ZSWAPU_PAGES_DIR or else ../shared/data/pages relative to the repo root,
 * where the runner runs.  A missing corpus aborts with a message: it is not
 * optional (CI always has it).
 *
 * Synthetic pages are a pure function of (kind, seed), so a test can
 * regenerate the page it expects instead of keeping a copy.
 */
#ifndef ZSWAPU_TESTS_CORPUS_H
#define ZSWAPU_TESTS_CORPUS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CORPUS_PAGE 4096
#define CORPUS_PAGES 4096 /* pages in each real corpus */
#define CORPUS_DIR "../shared/data/pages"

static const char *const corpus_names[] = { "python", "redis", "node", "sqlite" };
#define CORPUS_NR (sizeof(corpus_names) / sizeof(corpus_names[0]))

/* corpus_load() : all pages of corpus @name; *@npages gets their count. */
static inline uint8_t *corpus_load(const char *name, size_t *npages)
{
	const char *dir = getenv("ZSWAPU_PAGES_DIR");
	char path[512], cmd[600];
	snprintf(path, sizeof(path), "%s/%s.pages.xz", dir ? dir : CORPUS_DIR, name);
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "corpus: cannot open %s (run from the repo root with "
			"../shared present, or set ZSWAPU_PAGES_DIR)\n", path);
		abort();
	}
	fclose(f);
	snprintf(cmd, sizeof(cmd), "xz -dc '%s'", path);
	FILE *p = popen(cmd, "r");
	size_t cap = (size_t)CORPUS_PAGES * CORPUS_PAGE;
	uint8_t *buf = p ? malloc(cap) : NULL;
	size_t got = buf ? fread(buf, 1, cap, p) : 0;
	int rc = p ? pclose(p) : -1;
	if (!buf || rc != 0 || got == 0 || got % CORPUS_PAGE) {
		fprintf(stderr, "corpus: reading %s failed (xz status %d, %zu bytes)\n",
			path, rc, got);
		abort();
	}
	*npages = got / CORPUS_PAGE;
	return buf;
}

static inline uint64_t corpus_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* Small deterministic PRNG (splitmix64). */
static inline uint64_t corpus_rand(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	return corpus_mix64(*s);
}

enum corpus_kind {
	CORPUS_TEXT,   /* English-like words and punctuation */
	CORPUS_HEAP,   /* 8-byte pointers, small ints, headers: a malloc heap */
	CORPUS_ZERO,   /* all zeros */
	CORPUS_SAME,   /* one non-zero 8-byte word repeated */
	CORPUS_RANDOM, /* incompressible */
	CORPUS_KINDS
};

static const char *const corpus_kind_names[] = { "text", "heap", "zero", "same",
						 "random" };

/* Prose-like: words and recurring phrases, lz4 ~2.5-3:1 like real text. */
static inline void corpus_text_page(uint8_t *p, uint64_t seed)
{
	static const char *const words[] = {
		"the ", "of ", "and ", "to ", "in ", "page ", "memory ", "compressed ",
		"pool ", "handler ", "fault ", "value ", "record ", "user ", "identifier ",
		"name ", "time ", "list ", "data ", "is ", "for ", "with ", "zswap ",
		"kernel ", "process ", "thread ", "a ", "that ", "on ", "key. ",
		"the program touches a cold page and waits. ",
		"each entry holds a handle, a length and flags. ",
		"{\"id\": 1234, \"name\": \"customer\", \"active\": true}\n",
		"reclaim runs in batches on the other core. ",
	};
	uint64_t s = seed;
	size_t n = 0;
	while (n < CORPUS_PAGE) {
		uint64_t r = corpus_rand(&s);
		const char *w = words[r % (sizeof(words) / sizeof(words[0]))];
		for (; *w && n < CORPUS_PAGE; w++)
			p[n++] = (uint8_t)*w;
	}
}

/*
 * Words as a malloc heap holds them: many zeros, pointers into a few
 * hundred nearby 16-byte slots, small integers, chunk headers of a few
 * sizes, and some high-entropy words (hashes, doubles).  lz4 gets ~2-3:1.
 */
static inline void corpus_heap_page(uint8_t *p, uint64_t seed)
{
	uint64_t s = seed;
	uint64_t base = 0x00005600a0000000ULL + ((seed & 0xfff) << 16);
	for (size_t i = 0; i < CORPUS_PAGE; i += 8) {
		uint64_t r = corpus_rand(&s), w;
		switch (r % 10) {
		case 0: case 1: case 2: case 3:
			w = 0;
			break;
		case 4: case 5:
			w = base + ((r >> 8) & 0xff) * 16;
			break;
		case 6: case 7:
			w = (r >> 16) & 0x3f;
			break;
		case 8:
			w = (((r >> 20) & 3) + 1) * 0x20 + 1;
			break;
		default:
			w = r;
		}
		memcpy(p + i, &w, 8);
	}
}

/* corpus_synth() : the page of @kind for @seed. */
static inline void corpus_synth(enum corpus_kind kind, uint64_t seed, uint8_t *p)
{
	uint64_t s = seed, w;
	switch (kind) {
	case CORPUS_TEXT:
		corpus_text_page(p, seed);
		break;
	case CORPUS_HEAP:
		corpus_heap_page(p, seed);
		break;
	case CORPUS_ZERO:
		memset(p, 0, CORPUS_PAGE);
		break;
	case CORPUS_SAME:
		w = corpus_rand(&s) | 1;
		for (size_t i = 0; i < CORPUS_PAGE; i += 8)
			memcpy(p + i, &w, 8);
		break;
	default:
		for (size_t i = 0; i < CORPUS_PAGE; i += 8) {
			w = corpus_rand(&s);
			memcpy(p + i, &w, 8);
		}
	}
}

#endif
