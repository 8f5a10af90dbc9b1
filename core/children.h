/*
 * children — forked children whose stored pages the handler serves.
 *
 * With UFFD_FEATURE_EVENT_FORK the kernel gives a forked child a
 * userfaultfd of its own, registered like the parent's, and hands it to
 * the handler in the fork event.  The child's missing pages are the ones
 * the parent had stored at the fork: the child gets a store_fork() view of
 * the store (sharing the compressed data, not copying it), and the pages
 * the reclaimer had in staging are copied in at once.  From then on the
 * child's faults, discards, moves and own forks arrive on its descriptor
 * and are handled here like the parent's, against its view.  fork()+exec
 * costs the view (16 bytes per stored page and its slot, no decompression); the view
 * goes when the child execs or exits.
 *
 * The child is served, not reclaimed: its pages never leave it again.
 * When the parent's engine shuts down, every child still alive gets all of
 * its remaining pages first (children_release_all), so it never reads
 * zeros for a page that was stored.  A parent killed outright (SIGKILL)
 * cannot do that: a child it forked then takes over itself and makes each
 * page still owed raise SIGBUS (core/orphan.h), rather than read zeros.
 *
 * Only the thread holding the engine's role lock calls these functions:
 * the handler, or a fault thread (core/fthreads.c) serving a child's
 * faults on the CPU they came from.
 */
#ifndef ZSWAPU_CHILDREN_H
#define ZSWAPU_CHILDREN_H

#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/region.h"
#include "core/uffd.h"

#define CHILDREN_MAX 64

struct children;
struct store;

/* Counters, read lock-free by stats snapshots. */
struct children_counters {
	_Atomic uint64_t forks;         /* children taken on */
	_Atomic uint64_t faults;        /* their faults served */
	_Atomic uint64_t faults_store;  /* ... from their stored pages */
	_Atomic uint64_t exited;        /* views dropped: the child exited or exec'd */
	_Atomic uint64_t refused;       /* forks that could not be served (see log) */
	_Atomic uint64_t released;      /* views handed all their pages (children_release_all) */
	_Atomic uint64_t remap_placed;  /* stored pages put in after an mremap (resolve_unmoved) */
};

int children_create(struct children **out);
/* children_destroy() : after children_release_all(). */
void children_destroy(struct children *c);

/*
 * children_on_new() : @fn(@arg, fd) is called with the descriptor of each
 * child taken on, grandchildren included (the engine's fault threads then
 * watch it; see fthreads_watch()).
 */
typedef void (*children_new_fn)(void *arg, int fd);
void children_on_new(struct children *c, children_new_fn fn, void *arg);

/* Copies the pages the reclaimer holds in staging into a new child. */
typedef void (*children_staged_fn)(void *arg, struct uffd *child);

/*
 * children_fork() : take on the child behind descriptor @fd (from a fork
 * event read on @from: the program's descriptor, or a child's for a
 * grandchild) whose missing pages are @src's entries but those in
 * @absent (NULL: none), the ranges a child does not inherit (DONTFORK);
 * the caller holds every change to @src off.  @staged, when not NULL, is
 * called once with the child's descriptor.  A child that cannot be kept
 * (table full, no memory for its view) gets all of @src's pages at once
 * instead, is let go, and is counted as refused.  @orphan: the fork
 * event's pair (resolve_fork_pair(); 0: none), with which the child takes
 * over should this process die (core/orphan.h).
 */
void children_fork(struct children *c, int fd, const struct uffd *from, struct store *src,
		   struct region_set *absent, uint64_t orphan, children_staged_fn staged,
		   void *staged_arg);

/* children_pollfds() : fill up to @max pollfds for the children; returns how many. */
size_t children_pollfds(struct children *c, struct pollfd *p, size_t max);

/*
 * children_serve() : read and handle what the children whose pollfds
 * (as filled by children_pollfds) are ready have sent, and retry what
 * waited for an event.  @return true when something still waits (poll
 * again soon).
 */
bool children_serve(struct children *c, const struct pollfd *p, size_t n);

/* children_reap() : drop the views of children that exited or exec'd. */
void children_reap(struct children *c);

/* children_release_all() : give every child all its pages and let go of it. */
void children_release_all(struct children *c);

/*
 * children_forget() : in a forked child process, whose copy of this is
 * inert: close the copied descriptors, free nothing.
 */
void children_forget(struct children *c);

size_t children_count(const struct children *c);
const struct children_counters *children_counters(const struct children *c);

#endif
