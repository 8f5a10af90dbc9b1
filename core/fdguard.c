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
 * Reads begun and ended.  The fork copies the table before the memory, so
 * the child's counters may be later than its table: what it must know is
 * whether a read was under way at any moment from fdguard_fork_prepare()
 * on.  None was if none was then (ended read first: begun == ended means
 * every read begun by the second load had ended by the first) and none has
 * begun since.
 */
static _Atomic uint64_t arrivals_begun, arrivals_ended;
static __thread uint64_t fork_begun, fork_ended;

void fdguard_arrival_begin(void)
{
	atomic_fetch_add(&arrivals_begun, 1);
}

void fdguard_arrival_end(void)
{
	atomic_fetch_add(&arrivals_ended, 1);
}

void fdguard_fork_prepare(void)
{
	fork_ended = atomic_load(&arrivals_ended);
	fork_begun = atomic_load(&arrivals_begun);
}

bool fdguard_fork_missed(void)
{
	return fork_begun != fork_ended || atomic_load(&arrivals_begun) != fork_begun;
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
