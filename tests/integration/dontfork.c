/*
 * dontfork — MADV_DONTFORK memory through the LD_PRELOAD shim.  A buffer
 * whose upper half is marked DONTFORK before anything is in it (as V8
 * marks a reservation before it uses it: the shim learns it from a full
 * scan, not from the madvise call), filled, then left cold for 1.5 s while
 * another buffer is rewritten, so that the limit takes it.  Then a fork:
 * the child checks the lower half and grows it in place over the half it
 * did not inherit (mremap, no event for zswapu), which must read zeros,
 * not the parent's pages; the parent checks every byte.
 *
 * Every byte is checked against its generator; the output (what was
 * checked) is the same natively and under zswapu.  Exit status 1 on a
 * mismatch, with where on stderr.
 *
 *   dontfork MIB      (each half of the buffer, and the other buffer)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mix.h"

#define PAGE 4096UL
#define WORDS (PAGE / sizeof(uint64_t))

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* word i of a buffer: runs of 16 equal words, so that pages compress */
static uint64_t word(uint64_t seed, size_t i)
{
	return mix(seed + i / 16);
}

/* 1 MiB a millisecond at most: a program's growth, not memset's, which
 * the shim (armed at 3/4 of the limit, then scanning) could not follow */
static void fill(uint64_t *p, size_t pages, uint64_t seed)
{
	for (size_t i = 0; i < pages * WORDS; i++) {
		p[i] = word(seed, i);
		if (i % (256 * WORDS) == 256 * WORDS - 1)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
}

/* The first word that differs from fill()'s, or pages * WORDS. */
static size_t differs(const uint64_t *p, size_t pages, uint64_t seed)
{
	for (size_t i = 0; i < pages * WORDS; i++)
		if (p[i] != word(seed, i))
			return i;
	return pages * WORDS;
}

int main(int argc, char **argv)
{
	if (argc != 2 || atoi(argv[1]) <= 0) {
		fprintf(stderr, "usage: dontfork MIB\n");
		return 2;
	}
	size_t half = (size_t)atoi(argv[1]) << 20, pages = half / PAGE;
	uint8_t *m = mmap(NULL, 2 * half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *other = mmap(NULL, half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || other == MAP_FAILED || madvise(m + half, half, MADV_DONTFORK)) {
		perror("dontfork: mmap/madvise");
		return 2;
	}
	fill((uint64_t *)m, 2 * pages, 1);
	/* the same contents at every pass: the output does not depend on
	 * how many passes 1.5 s allow */
	for (double t0 = now(); now() - t0 < 1.5;)
		fill(other, pages, 1u << 30);
	pid_t pid = fork();
	if (pid < 0) {
		perror("dontfork: fork");
		return 2;
	}
	if (pid == 0) {
		size_t at = differs((uint64_t *)m, pages, 1);
		if (at != pages * WORDS) {
			fprintf(stderr, "dontfork: child: page %zu differs\n", at / WORDS);
			_exit(1);
		}
		if (mremap(m, half, 2 * half, 0) != m) {
			perror("dontfork: child: mremap in place");
			_exit(2);
		}
		for (size_t i = half; i < 2 * half; i++)
			if (m[i]) {
				fprintf(stderr, "dontfork: child: page %zu of the grown part is not zero "
						"(the parent's DONTFORK page?)\n",
					(i - half) / PAGE);
				_exit(1);
			}
		_exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
		fprintf(stderr, "dontfork: the child did not exit\n");
		return 1;
	}
	size_t at = differs((uint64_t *)m, 2 * pages, 1), at2 = differs(other, pages, 1u << 30);
	if (at != 2 * pages * WORDS || at2 != pages * WORDS) {
		fprintf(stderr, "dontfork: parent: page %zu differs\n",
			at != 2 * pages * WORDS ? at / WORDS : 2 * pages + at2 / WORDS);
		return 1;
	}
	if (WEXITSTATUS(status))
		return WEXITSTATUS(status);
	printf("dontfork: %zu MiB checked in the parent, %zu MiB in the child, its grown %zu MiB zero\n",
	       3 * half >> 20, half >> 20, half >> 20);
	return 0;
}
