/*
 * fthreads — fault threads: one thread per CPU reading a userfaultfd, each
 * kept on its CPU, so that a fault is resolved on the CPU it came from.
 *
 * Why: a fault puts the faulting thread to sleep and leaves its CPU idle.
 * A handler on another CPU resolves it and must then wake that CPU from
 * idle, which on these virtual machines costs ~15 us, three times the rest
 * of the round trip (fault_bench's placement table: the bare round trip is
 * 3.8 us with the handler on the faulting CPU, 19 us with one spinning on
 * the other).  With a thread kept on every CPU, the one on the faulting CPU
 * is woken there at no cost, and the woken thread finds its CPU busy.
 *
 * Who takes a fault: every thread polling the fd wakes.  The thread that
 * took the last fault (the primary) takes the next one at once; another
 * leaves it for FTHREADS_TAKEOVER_NS, enough for the primary to read it if
 * it is on the faulting CPU, and takes it after that (the faulting thread
 * has moved CPU, or the primary's CPU is busy).  In a burst of faults (the
 * last one less than spin_us ago) one other thread keeps its CPU busy
 * polling: the scheduler, finding no idle CPU, then wakes the faulting
 * thread where it slept instead of moving it to an idle one, again at the
 * cost of a wake-up from idle.
 *
 * The caller's take() reads and resolves (the fd and every watched one);
 * it is called from any of the threads, possibly at once from two:
 * serialising it is the caller's.
 * Threads start with every signal blocked (pagesrc_thread_create()) and
 * use only engine memory.
 */
#ifndef ZSWAPU_FTHREADS_H
#define ZSWAPU_FTHREADS_H

#include <stdint.h>

/* Threads started by default: one per CPU, this many at most. */
#define FTHREADS_AUTO 4
#define FTHREADS_MAX 16

struct fthreads;

/*
 * What a thread's poll saw readable when it calls take(): the fd, a
 * watched descriptor (fthreads_watch()), or either (FTHREADS_READY_ANY:
 * a look that did not say which).  take() need read no more than that
 * says: a message that comes after the poll is seen by the next one.
 */
#define FTHREADS_READY_FD 1u
#define FTHREADS_READY_WATCHED 2u
#define FTHREADS_READY_ANY (FTHREADS_READY_FD | FTHREADS_READY_WATCHED)

/* Read and resolve what the fd holds (and the watched ones, as @ready
 * says); > 0 when that included messages, < 0 when reading failed: the
 * threads then stop. */
typedef long (*fthreads_take_fn)(void *arg, unsigned int ready);

/* Called once by each thread as it starts (NULL: nothing to do). */
typedef void (*fthreads_ready_fn)(void *arg);

/*
 * fthreads_start() : one thread per CPU the calling thread may run on, at
 * most @want (0: FTHREADS_AUTO), each calling @ready(@arg) once, then
 * polling @fd (O_NONBLOCK) and calling @take(@arg) as above.  None on one
 * CPU or with @want 1 (*@out NULL, 0 returned): a single handler then is
 * on the faulting CPU anyway, or the caller asked for it.
 * @return 0 or -errno (nothing started).
 */
int fthreads_start(int fd, unsigned int want, unsigned int spin_us, fthreads_take_fn take,
		   fthreads_ready_fn ready, void *arg, struct fthreads **out);

/*
 * fthreads_watch() : poll @fd (O_NONBLOCK) too, and call take() when it
 * has a message, until it is closed: the uffd of a forked child, whose
 * faults are then resolved on their CPU like the program's own.  Behind
 * one epoll descriptor, so a closed one drops out by itself and its number
 * is never polled again (it may name another file by then).  @return 0
 * or -errno.
 */
int fthreads_watch(struct fthreads *f, int fd);

/* fthreads_stop() : stop and join them all, and free @f (NULL: nothing). */
void fthreads_stop(struct fthreads *f);

/* fthreads_forked_child() : in a forked child (no thread of ours there),
 * close its copies of the descriptors; @f stays for the inert engine. */
void fthreads_forked_child(struct fthreads *f);

#endif
