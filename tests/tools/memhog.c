/*
 * memhog — a managed program for the tool tests (tests/tools/run.sh):
 * fills MIB mebibytes with compressible pages (a deterministic pattern per
 * page), then for SECONDS seconds rewrites a hot tenth and reads all of it
 * back, checking every page against its pattern.  Exits 0 when every read
 * matched, 1 otherwise.  Prints "ready" once the memory is filled.
 * With "closeall" it then does what daemons and careless programs do to
 * descriptors they do not own: dup2() over every number, closefrom(3),
 * close() of every number, and opens to take the low numbers again; the
 * engine's descriptors must survive it (core/fdguard.h).
 *
 * usage: memhog MIB SECONDS [closeall]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

/* Page @i at generation @gen: words that compress well but differ per page. */
static void pattern(uint64_t *w, size_t i, unsigned gen)
{
	for (size_t k = 0; k < PAGE / 8; k++)
		w[k] = (k % 4 == 0) ? ((uint64_t)i * 4099 + k + gen) * 0x9E3779B97F4A7C15ULL : (uint64_t)(k & 7);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "closeall"))) {
		fprintf(stderr, "usage: memhog MIB SECONDS [closeall]\n");
		return 2;
	}
	size_t pages = strtoull(argv[1], NULL, 10) * 256;
	double secs = strtod(argv[2], NULL);
	unsigned char *m = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned *gen = calloc(pages, sizeof(*gen));
	if (m == MAP_FAILED || !gen)
		return 2;
	for (size_t i = 0; i < pages; i++)
		pattern((uint64_t *)(m + i * PAGE), i, 0);
	printf("ready\n");
	fflush(stdout);
	if (argc == 4) {
		/* let the limit push the pages out first */
		struct timespec ts = { 1, 0 };
		nanosleep(&ts, NULL);
		for (int fd = 3; fd < 1024; fd++)
			dup2(STDERR_FILENO, fd);
		closefrom(3);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		for (int i = 0; i < 16; i++)
			open("/dev/null", O_RDWR);
	}
	uint64_t want[PAGE / 8];
	size_t bad = 0, hot = pages / 10 ? pages / 10 : 1;
	double end = now() + secs;
	for (unsigned round = 1; now() < end; round++) {
		for (size_t i = 0; i < hot; i++) {
			gen[i] = round;
			pattern((uint64_t *)(m + i * PAGE), i, round);
		}
		for (size_t i = 0; i < pages; i++) {
			pattern(want, i, gen[i]);
			if (memcmp(want, m + i * PAGE, PAGE))
				bad++;
		}
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (bad)
		fprintf(stderr, "memhog: %zu pages read wrong\n", bad);
	return bad ? 1 : 0;
}
