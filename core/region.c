/*
 * region — see region.h.  A sorted array: the set is small (a process has
 * few large anonymous mappings) and changes rarely, so binary search and
 * memmove beat a tree here.
 */
#include "core/region.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "pools/pagesrc.h"

struct region_set {
	pthread_rwlock_t lock;
	size_t n;
	size_t npages; /* of this struct, for freeing */
	struct region_interval v[];
};

int region_set_create(struct region_set **out)
{
	size_t bytes = sizeof(struct region_set) + REGION_MAX * sizeof(struct region_interval);
	size_t npages = (bytes + PAGESRC_PAGE_SIZE - 1) / PAGESRC_PAGE_SIZE;
	struct region_set *rs;
	int err = pagesrc_alloc(npages, (void **)&rs);
	if (err)
		return err;
	memset(rs, 0, sizeof(*rs));
	pthread_rwlock_init(&rs->lock, NULL);
	rs->npages = npages;
	*out = rs;
	return 0;
}

void region_set_destroy(struct region_set *rs)
{
	if (!rs)
		return;
	pthread_rwlock_destroy(&rs->lock);
	pagesrc_free(rs, rs->npages);
}

size_t region_lower(const struct region_interval *v, size_t n, uintptr_t addr)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t lower(const struct region_set *rs, uintptr_t addr)
{
	return region_lower(rs->v, rs->n, addr);
}

static int add_locked(struct region_set *rs, uintptr_t start, uintptr_t end)
{
	/* first interval touching or after start (end >= start merges adjacency) */
	size_t i = start ? lower(rs, start - 1) : 0;
	size_t j = i;
	while (j < rs->n && rs->v[j].start <= end) {
		if (rs->v[j].start < start)
			start = rs->v[j].start;
		if (rs->v[j].end > end)
			end = rs->v[j].end;
		j++;
	}
	if (j == i) { /* no overlap: insert */
		if (rs->n == REGION_MAX)
			return -ENOSPC;
		memmove(&rs->v[i + 1], &rs->v[i], (rs->n - i) * sizeof(rs->v[0]));
		rs->n++;
	} else { /* merge v[i..j) into v[i] */
		memmove(&rs->v[i + 1], &rs->v[j], (rs->n - j) * sizeof(rs->v[0]));
		rs->n -= j - i - 1;
	}
	rs->v[i] = (struct region_interval){ start, end };
	return 0;
}

int region_add(struct region_set *rs, uintptr_t start, uintptr_t end)
{
	if (start >= end)
		return -EINVAL;
	pthread_rwlock_wrlock(&rs->lock);
	int err = add_locked(rs, start, end);
	pthread_rwlock_unlock(&rs->lock);
	return err;
}

void region_cut(struct region_interval *v, size_t *n, size_t cap, uintptr_t start, uintptr_t end,
		bool keep_whole)
{
	size_t i = region_lower(v, *n, start);
	while (i < *n && v[i].start < end) {
		struct region_interval *iv = &v[i];
		if (iv->start < start && iv->end > end) { /* split in two */
			if (*n == cap) { /* no room: the whole, or the head */
				if (!keep_whole)
					iv->end = start;
				return;
			}
			memmove(&v[i + 1], &v[i], (*n - i) * sizeof(v[0]));
			(*n)++;
			v[i].end = start;
			v[i + 1].start = end;
			return;
		}
		if (iv->start < start) {
			iv->end = start;
			i++;
		} else if (iv->end > end) {
			iv->start = end;
			return;
		} else {
			memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(v[0]));
			(*n)--;
		}
	}
}

static void remove_locked(struct region_set *rs, uintptr_t start, uintptr_t end)
{
	region_cut(rs->v, &rs->n, REGION_MAX, start, end, false);
}

void region_remove(struct region_set *rs, uintptr_t start, uintptr_t end)
{
	pthread_rwlock_wrlock(&rs->lock);
	remove_locked(rs, start, end);
	pthread_rwlock_unlock(&rs->lock);
}

int region_move(struct region_set *rs, uintptr_t old, uintptr_t new_addr, size_t len)
{
	pthread_rwlock_wrlock(&rs->lock);
	/*
	 * Only the managed parts of the old range move.  mremap moves one VMA,
	 * so there is one part; a few more are allowed for safety.
	 */
	struct region_interval parts[64];
	size_t np = 0;
	for (size_t i = lower(rs, old); i < rs->n && rs->v[i].start < old + len && np < 64; i++) {
		uintptr_t s = rs->v[i].start > old ? rs->v[i].start : old;
		uintptr_t e = rs->v[i].end < old + len ? rs->v[i].end : old + len;
		parts[np++] = (struct region_interval){ s - old + new_addr, e - old + new_addr };
	}
	remove_locked(rs, old, old + len);
	int err = 0;
	for (size_t k = 0; k < np && !err; k++)
		err = add_locked(rs, parts[k].start, parts[k].end);
	pthread_rwlock_unlock(&rs->lock);
	return err;
}

bool region_contains(struct region_set *rs, uintptr_t addr)
{
	pthread_rwlock_rdlock(&rs->lock);
	size_t i = lower(rs, addr);
	bool in = i < rs->n && rs->v[i].start <= addr;
	pthread_rwlock_unlock(&rs->lock);
	return in;
}

bool region_next(struct region_set *rs, uintptr_t addr, uintptr_t *start, uintptr_t *end)
{
	pthread_rwlock_rdlock(&rs->lock);
	size_t i = lower(rs, addr);
	bool found = i < rs->n;
	if (found) {
		*start = rs->v[i].start > addr ? rs->v[i].start : addr;
		*end = rs->v[i].end;
	}
	pthread_rwlock_unlock(&rs->lock);
	return found;
}

size_t region_count(struct region_set *rs)
{
	pthread_rwlock_rdlock(&rs->lock);
	size_t n = rs->n;
	pthread_rwlock_unlock(&rs->lock);
	return n;
}

size_t region_bytes(struct region_set *rs)
{
	pthread_rwlock_rdlock(&rs->lock);
	size_t b = 0;
	for (size_t i = 0; i < rs->n; i++)
		b += rs->v[i].end - rs->v[i].start;
	pthread_rwlock_unlock(&rs->lock);
	return b;
}

size_t region_snapshot(struct region_set *rs, uintptr_t (*out)[2], size_t max)
{
	pthread_rwlock_rdlock(&rs->lock);
	size_t n = rs->n < max ? rs->n : max;
	for (size_t i = 0; i < n; i++) {
		out[i][0] = rs->v[i].start;
		out[i][1] = rs->v[i].end;
	}
	pthread_rwlock_unlock(&rs->lock);
	return n;
}
