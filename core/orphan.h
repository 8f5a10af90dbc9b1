/*
 * orphan — a forked child's stored pages when its parent ends without
 * handing them over (SIGKILL, the OOM killer, a raw exit_group()).
 *
 * The parent's handler serves a forked child through the userfaultfd the
 * fork event gave it (core/children.c).  That descriptor lives in the
 * parent alone: when the parent dies, the kernel releases it, unregisters
 * the child's ranges, and a page that was stored reads as zeros, a silent
 * corruption.  Every other ending hands the pages over first.
 *
 * So the child holds the descriptor too, and a thread of its own (the
 * watcher) takes over when the parent is gone.  The kernel facts this
 * rests on, measured on 6.18: a child holding its uffd keeps its faults
 * waiting after the parent's death and can resolve them itself; a
 * descriptor in flight in a socket is held by the receiving end.
 *
 * 1. Prepare (the forking thread, under the engine's fork lock): a
 *    socketpair and a memfd (the log).
 * 2. The handler reads the fork event while fork() waits for that read:
 *    it takes the pair (orphan_take()) and sends the child's descriptor
 *    down the socket.  Forks go one at a time and each waits in its
 *    parent handler until its pair is taken or cannot be (orphan_parent()),
 *    so an event meets its own fork's pair.
 * 3. The child, before fork() returns in it (orphan_child()), receives the
 *    descriptor and starts the watcher, which sleeps in a read of the
 *    socket until the parent's end closes: the parent let go of it
 *    (its pages all handed over, or it exec'd) or died.
 * 4. The parent keeps the log as it serves the child (struct orphan_log):
 *    the ranges its view of the child still owes, written at the fork, and
 *    the child's discards and moves since.  The pages it copies in are not
 *    logged: they are present, and what is present is left alone.
 * 5. The watcher, at the end of the socket, replays the log, reads what
 *    the child's mm sent since (its discards, moves, faults), makes every
 *    page still owed a poisoned one (UFFDIO_POISON: SIGBUS when touched,
 *    as a swap read error gives, and one line on stderr), and closes the
 *    descriptor: the rest of the child's memory is ordinary memory again.
 *    A program so dies loudly instead of computing on zeros.  The data
 *    itself is in the parent's pool, which died with it.
 *
 * Not covered: a child of a child (its events come on the child's
 * descriptor, read by the parent's handler, with no pair); a child made
 * by a raw clone() or by a fork that runs no atfork handlers; a kernel
 * without UFFDIO_POISON (before 6.6: the child is told how many pages it
 * lost, and reads zeros there, as before).
 */
#ifndef ZSWAPU_ORPHAN_H
#define ZSWAPU_ORPHAN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ORPHAN_INFLIGHT 8

struct index;

/* One per engine, in the parent. */
struct orphan_slot {
	_Atomic int sock;   /* published by prepare: the parent's end; -1 none */
	int child_sock;     /* its peer, the child's end */
	int memfd;          /* the log, shared by both */
	/* taken, not yet in a child's log: a fork meanwhile closes them in
	 * its child (orphan_child()); packed as orphan_take() returns them */
	_Atomic uint64_t inflight[ORPHAN_INFLIGHT];
};

void orphan_slot_init(struct orphan_slot *s);

/*
 * The fork protocol, from the engine's atfork handlers; all forks of the
 * process are serialised by the caller's lock from prepare to parent/child.
 * orphan_prepare() : make and publish the pair (none on failure: that
 * child is not covered).  orphan_parent() : in the parent, once fork()
 * returned.  orphan_child() : in the child, for each engine's slot;
 * orphan_child_done() after the last one, which starts the watcher.
 */
void orphan_prepare(struct orphan_slot *s);
void orphan_parent(struct orphan_slot *s);
void orphan_child(struct orphan_slot *s, uint64_t features);
void orphan_child_done(void);

/*
 * orphan_fork_lock() / orphan_fork_unlock() : the watcher's own
 * descriptors change under this lock, which every fork holds, so a child
 * of the child never copies one half closed.
 */
void orphan_fork_lock(void);
void orphan_fork_unlock(void);
/* orphan_forked() : in any forked child, first: close the watcher's descriptors it copied. */
void orphan_forked(void);

/*
 * The reader's side: orphan_take() : for a fork event of the program's
 * uffd whose descriptor is @ufd, inside the read (before its
 * fdguard_arrival_end(), which orphan_parent() relies on): send it to the
 * child and return the pair (0: none), to be given to orphan_log_open()
 * and then orphan_settle().
 */
uint64_t orphan_take(struct orphan_slot *s, int ufd);
/* orphan_settle() : @pair is in a child's log now (or closed). */
void orphan_settle(struct orphan_slot *s, uint64_t pair);

/* ---- the parent's log of one child ---- */

#define ORPHAN_LOG_BUF 64

struct orphan_rec {
	uint64_t kind, a, b, c;
};

struct orphan_log {
	int sock, memfd; /* -1: not kept */
	uint64_t start, end; /* the committed records, as the header says */
	uint64_t since;      /* records after the last snapshot */
	uint64_t snap;       /* ranges in it */
	unsigned int n;
	struct orphan_rec buf[ORPHAN_LOG_BUF];
};

/*
 * orphan_log_open() : the log of the child given @pair (0: none: the log
 * is off), starting with what @view owes it.
 */
void orphan_log_open(struct orphan_log *l, uint64_t pair, struct index *view);
/* The child discarded or unmapped [start, end) / moved [from, from + len) to @to. */
void orphan_log_drop(struct orphan_log *l, uintptr_t start, uintptr_t end);
void orphan_log_move(struct orphan_log *l, uintptr_t from, uintptr_t to, size_t len);
/*
 * orphan_log_flush() : write what is buffered; a log grown well past its
 * snapshot is rewritten from @view, so it stays in proportion to it.
 */
void orphan_log_flush(struct orphan_log *l, struct index *view);
/* orphan_log_close() : let go: write what @view still owes (NULL: nothing
 * to add), close.  The child's watcher then takes over. */
void orphan_log_close(struct orphan_log *l, struct index *view);
/* orphan_log_forget() : in a forked child, close the copied descriptors. */
void orphan_log_forget(struct orphan_log *l);

/* Counters of this process as a forked child (tests, stats). */
struct orphan_counters {
	_Atomic uint64_t watched;  /* descriptors received: a watcher started */
	_Atomic uint64_t rescued;  /* watchers that took over */
	_Atomic uint64_t poisoned; /* pages made to raise SIGBUS */
};
const struct orphan_counters *orphan_counters(void);
/* orphan_watching() : descriptors this process's watcher holds (its own uffd each). */
unsigned int orphan_watching(void);

#endif
