/*
 * fdguard — see fdguard.h.
 */
#include "core/fdguard.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

/* room kept at the top: the engine's own few, plus a child's uffd each */
#define ROOM 128
#define TOP_MAX 1024

static _Atomic uint64_t marked[FDGUARD_MAX / 64];

static void mark(int fd, bool on)
{
	if (fd < 0 || fd >= FDGUARD_MAX)
		return;
	uint64_t bit = 1ULL << (fd % 64);
	if (on)
		atomic_fetch_or_explicit(&marked[fd / 64], bit, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(&marked[fd / 64], ~bit, memory_order_relaxed);
}

bool fdguard_owned(int fd)
{
	if (fd < 0 || fd >= FDGUARD_MAX)
		return false;
	return atomic_load_explicit(&marked[fd / 64], memory_order_relaxed) >> (fd % 64) & 1;
}

int fdguard_next(int from)
{
	if (from < 0)
		from = 0;
	for (int w = from / 64; w < FDGUARD_MAX / 64; w++) {
		uint64_t v = atomic_load_explicit(&marked[w], memory_order_relaxed);
		if (w == from / 64)
			v &= ~0ULL << (from % 64);
		if (v)
			return w * 64 + __builtin_ctzll(v);
	}
	return -1;
}

/*
 * The lowest number the engine moves to: ROOM below the smaller of the
 * soft limit and TOP_MAX (a higher number would make the kernel grow the
 * table that far; select() also stops at 1024).  0: do not move.
 */
static int floor_fd(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	rlim_t top = rl.rlim_cur < TOP_MAX ? rl.rlim_cur : TOP_MAX;
	return top >= 4 * ROOM ? (int)(top - ROOM) : 0;
}

int fdguard_adopt(int fd)
{
	if (fd < 0)
		return fd;
	int lo = floor_fd();
	if (lo && fd < lo) {
		int nfd = fcntl(fd, F_DUPFD_CLOEXEC, lo);
		if (nfd >= 0 && nfd < FDGUARD_MAX) {
			close(fd);
			fd = nfd;
		} else if (nfd >= 0) {
			close(nfd);
		}
	}
	mark(fd, true);
	return fd;
}

/*
 * A stray is a descriptor a read installed, in the table when the fork
 * copied it (t1), not in the child's copy of the children list (its
 * memory, copied later: t2), so the child cannot tell it from a program's.
 * Either the read was still under way at t1 (it began after the forking
 * thread's fdguard_fork_prepare(), t0, or before): at t2 it is under way
 * still (`reading`), or it has ended, counted in `fork_reads` after t0;
 * or the read had ended and moved it up, and at t2 it is not listed yet
 * (`unlisted`).  Each of the three is then seen in the child's copy.
 */
static _Atomic uint64_t reading, unlisted, fork_reads;
static __thread uint64_t fork_reads_at_prepare;

void fdguard_arrival_begin(void)
{
	atomic_fetch_add(&reading, 1);
}

void fdguard_arrival_end(unsigned int forks)
{
	if (forks) {
		atomic_fetch_add(&unlisted, forks);
		atomic_fetch_add(&fork_reads, 1);
	}
	atomic_fetch_sub(&reading, 1);
}

void fdguard_arrival_listed(void)
{
	atomic_fetch_sub(&unlisted, 1);
}

void fdguard_fork_prepare(void)
{
	fork_reads_at_prepare = atomic_load(&fork_reads);
}

bool fdguard_fork_missed(void)
{
	return atomic_load(&reading) || atomic_load(&unlisted) ||
	       atomic_load(&fork_reads) != fork_reads_at_prepare;
}

bool fdguard_reading(void)
{
	return atomic_load(&reading) != 0;
}

void fdguard_forget(int fd)
{
	mark(fd, false);
}

void fdguard_close(int fd)
{
	if (fd < 0)
		return;
	mark(fd, false);
	close(fd);
}
