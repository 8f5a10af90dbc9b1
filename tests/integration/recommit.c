/*
 * recommit — a heap the way V8 manages its pages: each 256 KiB page its
 * own mapping (a PROT_NONE guard page between two), made writable with
 * mprotect(), given back with mmap(MAP_FIXED, PROT_NONE) and made writable
 * again at the same address, round after round.  The shim sees neither
 * call as new memory: only its scans find a page made writable again, and
 * one with the bounds of a page it had registered looked known (node
 * peaked at 55 MiB under a 30 MiB limit).
 *
 * Each round rewrites every page, then checks every page against its
 * generator (pages are read back after the limit has taken them); the
 * output (what was checked) is the same natively and under zswapu.  Exit
 * status 1 on a mismatch, with where on stderr.
 *
 *   recommit PAGES ROUNDS
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "mix.h"

#define PAGE 4096UL
#define HEAP_PAGE (256 * 1024UL)
#define STRIDE (HEAP_PAGE + PAGE)
#define WORDS (HEAP_PAGE / sizeof(uint64_t))

/* word i of heap page @n in round @r: runs of 16 equal words, so that pages compress */
static uint64_t word(size_t n, int r, size_t i)
{
	return mix(((uint64_t)r << 40) + (n << 20) + i / 16);
}

int main(int argc, char **argv)
{
	if (argc != 3 || atoi(argv[1]) <= 0 || atoi(argv[2]) <= 0) {
		fprintf(stderr, "usage: recommit PAGES ROUNDS\n");
		return 2;
	}
	size_t n = (size_t)atoi(argv[1]);
	int rounds = atoi(argv[2]);
	uint8_t *heap = mmap(NULL, n * STRIDE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			     -1, 0);
	if (heap == MAP_FAILED) {
		perror("recommit: mmap");
		return 2;
	}
	for (int r = 0; r < rounds; r++) {
		for (size_t k = 0; k < n; k++) {
			uint64_t *p = (uint64_t *)(heap + k * STRIDE);
			if (r && mmap(p, HEAP_PAGE, PROT_NONE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
				      0) != p) {
				perror("recommit: mmap(MAP_FIXED)");
				return 2;
			}
			if (mprotect(p, HEAP_PAGE, PROT_READ | PROT_WRITE)) {
				perror("recommit: mprotect");
				return 2;
			}
			for (size_t i = 0; i < WORDS; i++)
				p[i] = word(k, r, i);
			/* 128 MiB/s: an allocating program's pace, not memset's */
			nanosleep(&(struct timespec){ 0, 2000000 }, NULL);
		}
		/*
		 * Read back in a scattered order, heap pages and the pages in
		 * each.  Read back in order, the first 15 ms of each pass ran
		 * up to 7 MiB over a 19 MiB limit (sampled every 2 ms), with
		 * or without the recommit handled, readahead capped to the room
		 * under the limit or not: not explained yet, and not what this
		 * program is here to check.
		 */
		size_t hop = n % 97 ? 97 : 1;
		for (size_t j = 0; j < n; j++) {
			size_t k = j * hop % n;
			const uint64_t *p = (const uint64_t *)(heap + k * STRIDE);
			for (size_t t = 0; t < HEAP_PAGE / PAGE; t++) {
				size_t first = t * 5 % (HEAP_PAGE / PAGE) * (PAGE / sizeof(uint64_t));
				for (size_t i = first; i < first + PAGE / sizeof(uint64_t); i++)
					if (p[i] != word(k, r, i)) {
						fprintf(stderr, "recommit: round %d: heap page %zu, word "
								"%zu differs\n",
							r, k, i);
						return 1;
					}
			}
		}
	}
	printf("recommit: %zu heap pages of 256 KiB given back and taken again %d times, every "
	       "word checked\n",
	       n, rounds - 1);
	return 0;
}
