/*
 * region — the address ranges the engine manages (registered with
 * userfaultfd), as a sorted set of disjoint [start, end) intervals.
 *
 * Adjacent and overlapping additions merge, removals split, and an mremap
 * moves a range.  The reclaimer walks the set with a clock hand
 * (region_next); the handler thread updates it on unmap/remap events.
 *
 * Locking: one rwlock; lookups and walks read, updates write.  It is a
 * leaf lock.  Storage is a fixed table in engine memory (REGION_MAX).
 */
#ifndef ZSWAPU_REGION_H
#define ZSWAPU_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Registered ranges are VMAs: the kernel's own limit is 65530 maps. */
#define REGION_MAX 8192

struct region_set;

/* An interval [start, end), as the set keeps them. */
struct region_interval {
	uintptr_t start, end;
};

/*
 * region_lower() : the first of the @n sorted, disjoint intervals @v whose
 * end is > @addr (@n when none): for other arrays of intervals too.
 */
size_t region_lower(const struct region_interval *v, size_t n, uintptr_t addr);

/*
 * region_cut() : take [@start, @end) out of the *@n sorted, disjoint
 * intervals @v (room for @cap).  A cut inside one interval splits it; with
 * no room for the second half, what stays is the whole interval
 * (@keep_whole) or its head.  The set's own removals keep the head.
 */
void region_cut(struct region_interval *v, size_t *n, size_t cap, uintptr_t start, uintptr_t end,
		bool keep_whole);

int region_set_create(struct region_set **out);
void region_set_destroy(struct region_set *rs);

/* region_add() : -ENOSPC when the table is full. */
int region_add(struct region_set *rs, uintptr_t start, uintptr_t end);
void region_remove(struct region_set *rs, uintptr_t start, uintptr_t end);
/* region_move() : what mremap did: [old, old+len) now lives at new. */
int region_move(struct region_set *rs, uintptr_t old, uintptr_t new_addr, size_t len);

bool region_contains(struct region_set *rs, uintptr_t addr);

/*
 * region_next() : the part of the first region that ends after @addr,
 * clipped to start at @addr: [*start, *end).  false when there is none
 * (the caller wraps to 0).
 */
bool region_next(struct region_set *rs, uintptr_t addr, uintptr_t *start, uintptr_t *end);

/* region_count() / region_bytes() : intervals and total bytes managed. */
size_t region_count(struct region_set *rs);
size_t region_bytes(struct region_set *rs);

/*
 * region_snapshot() : copy up to @max intervals into @out (for shutdown,
 * which unregisters them without holding the lock); returns the count.
 */
size_t region_snapshot(struct region_set *rs, uintptr_t (*out)[2], size_t max);

#endif
