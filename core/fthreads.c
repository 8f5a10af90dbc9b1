/*
 * fthreads — see fthreads.h.
 */
#include "core/fthreads.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/fdguard.h"
#include "core/stats.h"
#include "core/uffd.h"
#include "pools/pagesrc.h"

/*
 * What the thread on the faulting CPU needs to read a fault, with a margin:
 * with 3 us a tenth of the faults went to the other CPU (and paid the
 * wake-up from idle); a fault left longer is taken elsewhere.
 */
#define FTHREADS_TAKEOVER_NS 6000
/*
 * How often the burst poller looks.  Each look is a poll() of the uffd,
 * whose file count and wait queues it pulls from the primary's CPU in the
 * middle of the primary's read and ioctls.  fault_bench p50, three runs
 * each: looking every 2 us 9.9-10.3 us, 5 us 9.0-9.8, 10 us 9.4-9.6,
 * 20 us 8.2-9.0, 40 us 8.7-8.8.  The price: a fault the primary leaves
 * is taken 20-40 us late instead of 6-8.
 */
#define FTHREADS_POLL_EVERY_NS 20000

struct fthread {
	struct fthreads *f;
	pthread_t t;
	void *stack;
	int cpu;
	unsigned int idx;
	_Atomic bool asleep; /* in its blocking poll (fthread_main()) */
};

struct fthreads {
	int fd, stopfd;
	int epfd;              /* stopfd and the watched descriptors (fthreads_watch()) */
	_Atomic bool watching; /* any was ever watched: looks poll epfd too */
	uint64_t spin_ns;
	fthreads_take_fn take;
	fthreads_ready_fn ready;
	void *arg;
	unsigned int n;       /* threads the hand-over counts on */
	unsigned int started; /* threads to join */
	_Atomic bool stop;
	_Atomic unsigned int primary;   /* the thread that took the last fault */
	_Atomic uint64_t last_fault_ns;
	struct fthread t[FTHREADS_MAX];
};

static size_t struct_pages(void)
{
	return (sizeof(struct fthreads) + PAGESRC_PAGE_SIZE - 1) / PAGESRC_PAGE_SIZE;
}

static void take(struct fthread *t, unsigned int ready)
{
	struct fthreads *f = t->f;
	long n = f->take(f->arg, ready);
	if (n > 0) {
		atomic_store_explicit(&f->primary, t->idx, memory_order_relaxed);
		atomic_store_explicit(&f->last_fault_ns, stats_now_ns(), memory_order_relaxed);
	} else if (n < 0) {
		atomic_store(&f->stop, true); /* the caller has failed: no spinning on it */
	}
}

/*
 * The descriptors to poll: the fd itself and epfd, which holds the stop
 * eventfd and the watched descriptors (when @blocking, or once any is
 * watched: a look without sleeping need not pay for an empty one).  A
 * thread asleep since before the first watch sees that child's faults
 * too, so none goes to the one thread that woke for the fork event alone.
 */
static nfds_t pollfds(struct fthreads *f, struct pollfd *pf, bool blocking)
{
	pf[0] = (struct pollfd){ .fd = f->fd, .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = blocking || atomic_load_explicit(&f->watching,
									 memory_order_relaxed)
					      ? f->epfd : -1,
				 .events = POLLIN };
	return 2;
}

/* A message waiting on the fd or a watched one (no sleep). */
static bool pending(struct fthreads *f)
{
	struct pollfd pf[2];
	return poll(pf, pollfds(f, pf, false), 0) > 0;
}

static bool primary(const struct fthread *t)
{
	return atomic_load_explicit(&t->f->primary, memory_order_relaxed) == t->idx;
}

/*
 * The primary has not woken yet for what woke us.  The faulting thread's
 * CPU runs its fault thread at once, as the faulting thread sleeps; a
 * primary asleep elsewhere waits for a wake-up from idle.  Left the fault,
 * it took every one while the faulting thread ran on the other CPU (a
 * forked child, or a program thread that moved), each paying that
 * wake-up and the cross-CPU wake of the faulting thread.
 */
static bool primary_asleep(const struct fthreads *f)
{
	unsigned int p = atomic_load_explicit(&f->primary, memory_order_relaxed);
	return p < f->n && atomic_load_explicit(&f->t[p].asleep, memory_order_relaxed);
}

static bool in_burst(const struct fthreads *f, uint64_t now)
{
	return now - atomic_load_explicit(&f->last_fault_ns, memory_order_relaxed) < f->spin_ns;
}

/* The burst poller: keep this CPU busy; take what the primary leaves. */
static void poll_burst(struct fthread *t)
{
	struct fthreads *f = t->f;
	uint64_t seen = 0, polled = 0, now;
	while (!atomic_load(&f->stop) && !primary(t) && in_burst(f, now = stats_now_ns())) {
		if (now - polled < FTHREADS_POLL_EVERY_NS) {
			__builtin_ia32_pause();
			continue;
		}
		polled = now;
		if (!pending(f))
			seen = 0;
		else if (!seen)
			seen = now;
		else if (now - seen > FTHREADS_TAKEOVER_NS)
			take(t, FTHREADS_READY_ANY), seen = 0;
	}
}

static void *fthread_main(void *arg)
{
	struct fthread *t = arg;
	struct fthreads *f = t->f;
	char name[16];
	snprintf(name, sizeof(name), "zswapu-fault%u", t->idx);
	pthread_setname_np(pthread_self(), name);
	pagesrc_defer_release(true); /* the handler gives back when idle */
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(t->cpu, &s);
	/* best effort: a cpuset may have taken the CPU away since */
	pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
	if (f->ready)
		f->ready(f->arg);
	while (!atomic_load(&f->stop)) {
		unsigned int p = atomic_load_explicit(&f->primary, memory_order_relaxed);
		if (p != t->idx && (p + 1) % f->n == t->idx && in_burst(f, stats_now_ns())) {
			poll_burst(t);
			continue;
		}
		struct pollfd pf[2];
		atomic_store_explicit(&t->asleep, true, memory_order_relaxed);
		int r = poll(pf, pollfds(f, pf, true), -1);
		atomic_store_explicit(&t->asleep, false, memory_order_relaxed);
		if (r <= 0 || !((pf[0].revents | pf[1].revents) & POLLIN) || atomic_load(&f->stop))
			continue;
		unsigned int ready = (pf[0].revents & POLLIN ? FTHREADS_READY_FD : 0) |
				     (pf[1].revents & POLLIN ? FTHREADS_READY_WATCHED : 0);
		if (!primary(t) && !primary_asleep(f)) {
			uint64_t t0 = stats_now_ns();
			bool left = true;
			while (left && stats_now_ns() - t0 < FTHREADS_TAKEOVER_NS)
				left = pending(f);
			if (!left)
				continue;
			ready = FTHREADS_READY_ANY;
		}
		take(t, ready);
	}
	return NULL;
}

int fthreads_start(int fd, unsigned int want, unsigned int spin_us, fthreads_take_fn take_fn,
		   fthreads_ready_fn ready, void *arg, struct fthreads **out)
{
	*out = NULL;
	cpu_set_t cpus;
	if (want == 1)
		return 0;
	if (sched_getaffinity(0, sizeof(cpus), &cpus))
		return -errno;
	unsigned int max = want ? want : FTHREADS_AUTO, n = 0;
	if (max > FTHREADS_MAX)
		max = FTHREADS_MAX;
	int cpu[FTHREADS_MAX];
	for (int c = 0; c < CPU_SETSIZE && n < max; c++)
		if (CPU_ISSET(c, &cpus))
			cpu[n++] = c;
	if (n < 2)
		return 0;
	struct fthreads *f;
	int err = pagesrc_alloc(struct_pages(), (void **)&f);
	if (err)
		return err;
	*f = (struct fthreads){ .fd = fd, .spin_ns = spin_us * 1000ull, .take = take_fn,
				.ready = ready, .arg = arg, .n = n };
	f->stopfd = fdguard_adopt(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	f->epfd = f->stopfd < 0 ? -1 : fdguard_adopt(epoll_create1(EPOLL_CLOEXEC));
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = f->stopfd };
	if (f->epfd < 0 || epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->stopfd, &ev)) {
		err = -errno;
		fdguard_close(f->epfd);
		fdguard_close(f->stopfd);
		pagesrc_free(f, struct_pages());
		return err;
	}
	/* all set before any runs: each reads n */
	for (unsigned int i = 0; i < n; i++)
		f->t[i] = (struct fthread){ .f = f, .cpu = cpu[i], .idx = i };
	for (unsigned int i = 0; i < n; i++) {
		err = pagesrc_thread_create(&f->t[i].t, fthread_main, &f->t[i], &f->t[i].stack);
		if (err) {
			fthreads_stop(f);
			return err;
		}
		f->started++;
	}
	*out = f;
	return 0;
}

void fthreads_stop(struct fthreads *f)
{
	if (!f)
		return;
	atomic_store(&f->stop, true);
	uint64_t one = 1;
	ssize_t w = write(f->stopfd, &one, sizeof(one));
	(void)w;
	for (unsigned int i = 0; i < f->started; i++)
		pagesrc_thread_join(f->t[i].t, f->t[i].stack);
	fdguard_close(f->stopfd);
	fdguard_close(f->epfd);
	pagesrc_free(f, struct_pages());
}

void fthreads_forked_child(struct fthreads *f)
{
	if (!f)
		return;
	fdguard_close(f->stopfd);
	fdguard_close(f->epfd);
	f->stopfd = f->epfd = -1;
}

int fthreads_watch(struct fthreads *f, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	atomic_store(&f->watching, true);
	return 0;
}
