/*
 * crash — a managed program that dies of SIGSEGV with most of its memory
 * stored (tests/tools/run.sh reads the core dump).  Fills MIB mebibytes,
 * page i starting with "page <i> here", prints the address and the page
 * count, leaves them cold for 2 s (the limit stores them), then writes
 * through a null pointer.
 *
 * usage: crash MIB
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL

int main(int argc, char **argv)
{
	if (argc != 2 || atoi(argv[1]) <= 0) {
		fprintf(stderr, "usage: crash MIB\n");
		return 2;
	}
	size_t n = (size_t)atoi(argv[1]) * 256;
	char *m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < n; i++)
		snprintf(m + i * PAGE, PAGE, "page %zu here", i);
	printf("%lu %zu\n", (unsigned long)(uintptr_t)m, n);
	fflush(stdout);
	sleep(2);
	volatile uintptr_t null = 16; /* out of the compiler's sight */
	*(volatile int *)null = 1;
	return 0;
}
