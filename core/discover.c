/*
 * discover — see discover.h.
 *
 * The `known` table lists, in address order, the candidate ranges the
 * last scan saw, each MANAGED (registered) or KEPT_OUT (must stay
 * resident, or its registration failed).  A scan builds the next table
 * while it registers, then swaps: ranges that were unmapped simply do not
 * come back.
 *
 * What a quick scan cannot see is whether a VMA is still registered:
 * malloc unmaps and maps again without a word, and a new mapping often
 * lands where an old one was.  Managed ranges are therefore kept as the
 * VMAs they were (not merged), and a VMA counts as still managed only if
 * its bounds are those of managed VMAs seen before (was_managed); anything
 * else is registered again, which costs one idempotent call when it was
 * registered after all.  A mapping of exactly the old bounds passes that
 * test: V8 gives its 256 KiB heap pages back with mmap(MAP_FIXED,
 * PROT_NONE) and takes them again with mprotect(), and such pages filled
 * up unmanaged until the next full scan (tests/integration/recommit.c:
 * 69 MiB under a 19 MiB limit; most likely node's 55 MiB under 30 in CI,
 * the reclaimer finding nothing to take meanwhile).  So a quick scan
 * also asks the engine, which drops a range on its unmap event, whether
 * it still has the VMA (DISCOVER_MANAGED, a lookup).
 *
 * Keep-out requests (discover_keep_out) queue in `keep` under `keep_lock`
 * (a leaf lock: program threads take it in mlock and madvise) and move to
 * `pending` when a scan starts; a range pending is kept out by every scan
 * until one completes (an aborted scan must not forget it), and from then
 * on by the table.
 */
#include "core/discover.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/maps.h"
#include "pools/pagesrc.h"

#define PAGE PAGESRC_PAGE_SIZE
#define BUF_PAGES 2 /* a maps line with a PATH_MAX name fits */
#define KEPT_OUT 1UL /* in the low bit of range.start (starts are page-aligned) */

struct range {
	uintptr_t start, end;
};

struct discover {
	const char *maps, *smaps;
	discover_fn fn;
	void *arg;
	struct range excl[DISCOVER_EXCL_MAX];
	size_t nexcl;
	struct range *known, *next;
	size_t nknown, nnext;
	pthread_mutex_t keep_lock;
	struct range keep[DISCOVER_KEEP_MAX]; /* under keep_lock */
	size_t nkeep;
	bool keep_overflow;                   /* under keep_lock */
	struct range pending[DISCOVER_KEEP_MAX];
	size_t npending;
	char *buf;
	unsigned int keep_flags; /* MAPS_VM_* that keep a VMA resident */
	bool fork_ops;           /* tell DONTFORK apart (discover_manage_dontfork) */
	struct discover_stats st;
};

static size_t pages_of(size_t bytes)
{
	return (bytes + PAGE - 1) / PAGE;
}

#define TABLE_PAGES pages_of(DISCOVER_KNOWN_MAX * sizeof(struct range))

int discover_create(const char *maps, const char *smaps, discover_fn fn, void *arg,
		    struct discover **out)
{
	struct discover *d;
	int err = pagesrc_alloc(pages_of(sizeof(*d)), (void **)&d);
	if (err)
		return err;
	memset(d, 0, sizeof(*d));
	d->maps = maps ? maps : "/proc/self/maps";
	d->smaps = smaps ? smaps : "/proc/self/smaps";
	d->fn = fn;
	d->arg = arg;
	d->keep_flags = MAPS_VM_KEEP_RESIDENT;
	pthread_mutex_init(&d->keep_lock, NULL);
	err = pagesrc_alloc(TABLE_PAGES, (void **)&d->known);
	if (!err)
		err = pagesrc_alloc(TABLE_PAGES, (void **)&d->next);
	if (!err)
		err = pagesrc_alloc(BUF_PAGES, (void **)&d->buf);
	if (err) {
		discover_destroy(d);
		return err;
	}
	*out = d;
	return 0;
}

void discover_destroy(struct discover *d)
{
	if (!d)
		return;
	if (d->known)
		pagesrc_free(d->known, TABLE_PAGES);
	if (d->next)
		pagesrc_free(d->next, TABLE_PAGES);
	if (d->buf)
		pagesrc_free(d->buf, BUF_PAGES);
	pagesrc_free(d, pages_of(sizeof(*d)));
}

/* ---- exclusions: sorted, disjoint, merged ---------------------------------------- */

void discover_exclude(struct discover *d, uintptr_t start, uintptr_t end)
{
	start &= ~(PAGE - 1);
	end = (end + PAGE - 1) & ~(PAGE - 1);
	if (start >= end)
		return;
	size_t i = 0;
	while (i < d->nexcl && d->excl[i].end < start)
		i++;
	/* i: the first range ending at or after start; absorb every one it touches */
	size_t j = i;
	while (j < d->nexcl && d->excl[j].start <= end) {
		start = start < d->excl[j].start ? start : d->excl[j].start;
		end = end > d->excl[j].end ? end : d->excl[j].end;
		j++;
	}
	if (j == i && d->nexcl == DISCOVER_EXCL_MAX) {
		/* full: widen the nearest neighbour over the gap (too much left
		 * out is safe; too little is not) */
		size_t k = i == d->nexcl ? i - 1 : i;
		if (k > 0 && i < d->nexcl && start - d->excl[k - 1].end < d->excl[k].start - end)
			k--;
		start = start < d->excl[k].start ? start : d->excl[k].start;
		end = end > d->excl[k].end ? end : d->excl[k].end;
		i = k;
		j = k + 1;
	}
	memmove(&d->excl[i + 1], &d->excl[j], (d->nexcl - j) * sizeof(d->excl[0]));
	d->excl[i] = (struct range){ start, end };
	d->nexcl = d->nexcl - (j - i) + 1;
}

void discover_exclude_as(struct discover *d, const struct discover *from)
{
	for (size_t i = 0; i < from->nexcl; i++)
		discover_exclude(d, from->excl[i].start, from->excl[i].end);
}

bool discover_excluded(const struct discover *d, uintptr_t start, uintptr_t end)
{
	for (size_t i = 0; i < d->nexcl && d->excl[i].start < end; i++)
		if (d->excl[i].end > start)
			return true;
	return false;
}

int discover_exclude_present(struct discover *d, const uintptr_t (*keep)[2], size_t nkeep)
{
	struct maps_reader rd;
	int err = maps_open(&rd, d->maps, d->buf, BUF_PAGES * PAGE);
	if (err)
		return err;
	struct maps_vma v;
	int got;
	while ((got = maps_next(&rd, &v)) > 0) {
		if (!maps_candidate(&v) || v.kind == MAPS_HEAP)
			continue;
		/* the VMA minus the kept ranges (few: an executable's segments) */
		uintptr_t s = v.start;
		while (s < v.end) {
			uintptr_t e = v.end, next = v.end;
			for (size_t k = 0; k < nkeep; k++) {
				if (keep[k][0] <= s && keep[k][1] > s) {
					e = s; /* s is kept: skip to the end of it */
					next = keep[k][1];
					break;
				}
				if (keep[k][0] > s && keep[k][0] < e)
					e = next = keep[k][0];
			}
			if (e > s)
				discover_exclude(d, s, e);
			s = next > s ? next : v.end;
		}
	}
	maps_close(&rd);
	return got;
}

/*
 * The next piece of [*pos, end) outside every exclusion: [*ps, *pe).
 * false when none is left.
 */
static bool next_piece(const struct discover *d, uintptr_t *pos, uintptr_t end, uintptr_t *ps,
		       uintptr_t *pe)
{
	uintptr_t s = *pos;
	for (size_t i = 0; i < d->nexcl && s < end; i++) {
		if (d->excl[i].end <= s)
			continue;
		if (d->excl[i].start <= s) { /* s is excluded: jump past */
			s = d->excl[i].end;
			continue;
		}
		if (d->excl[i].start < end) { /* a piece up to this exclusion */
			*ps = s;
			*pe = d->excl[i].start;
			*pos = d->excl[i].end;
			return true;
		}
		break;
	}
	if (s >= end)
		return false;
	*ps = s;
	*pe = end;
	*pos = end;
	return true;
}

/* ---- the known table ---------------------------------------------------------------- */

static uintptr_t rstart(const struct range *r)
{
	return r->start & ~KEPT_OUT;
}

/*
 * Was [s, e) managed as one or more whole VMAs: does a MANAGED range start
 * at s, and do MANAGED ranges follow without a gap up to one ending at e?
 * (Registered VMAs that the kernel merged pass; memory unmapped and mapped
 * again inside a managed range, with other bounds, does not.)
 */
static bool was_managed(const struct range *t, size_t n, uintptr_t s, uintptr_t e)
{
	size_t lo = 0, hi = n;
	while (lo < hi) { /* the first range starting at or after s */
		size_t mid = (lo + hi) / 2;
		if (rstart(&t[mid]) < s)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == n || rstart(&t[lo]) != s)
		return false;
	for (size_t i = lo; i < n && !(t[i].start & KEPT_OUT); i++) {
		if (t[i].end == e)
			return true;
		if (t[i].end > e || i + 1 == n || rstart(&t[i + 1]) != t[i].end)
			return false;
	}
	return false;
}

static bool overlaps_pending(const struct discover *d, uintptr_t s, uintptr_t e)
{
	for (size_t i = 0; i < d->npending; i++)
		if (d->pending[i].start < e && d->pending[i].end > s)
			return true;
	return false;
}

/* Does [s, e) overlap a KEPT_OUT range of the table? */
static bool overlaps_kept_out(const struct discover *d, uintptr_t s, uintptr_t e)
{
	size_t lo = 0, hi = d->nknown;
	while (lo < hi) { /* the first range ending after s */
		size_t mid = (lo + hi) / 2;
		if (d->known[mid].end <= s)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < d->nknown && rstart(&d->known[i]) < e; i++)
		if (d->known[i].start & KEPT_OUT)
			return true;
	return false;
}

/*
 * Append [s, e) in state @out to the next table.  Kept-out ranges merge
 * with their neighbour; managed ones stay as the VMAs were, whose bounds
 * tell the next quick scan whether a VMA is still the one registered.
 */
static void record(struct discover *d, uintptr_t s, uintptr_t e, bool out)
{
	uintptr_t tag = out ? KEPT_OUT : 0;
	if (d->nnext && out) {
		struct range *last = &d->next[d->nnext - 1];
		if (last->end == s && (last->start & KEPT_OUT)) {
			last->end = e;
			return;
		}
	}
	/* full: the range goes unrecorded and the next scan looks again */
	if (d->nnext < DISCOVER_KNOWN_MAX)
		d->next[d->nnext++] = (struct range){ s | tag, e };
}

/* ---- scanning ----------------------------------------------------------------------- */

void discover_manage_dontfork(struct discover *d)
{
	d->keep_flags &= ~MAPS_VM_DONTCOPY;
	d->fork_ops = true;
}

void discover_keep_out(struct discover *d, uintptr_t start, uintptr_t end)
{
	pthread_mutex_lock(&d->keep_lock);
	if (d->nkeep < DISCOVER_KEEP_MAX)
		d->keep[d->nkeep++] = (struct range){ start, end };
	else
		d->keep_overflow = true; /* smaps will tell what is locked */
	pthread_mutex_unlock(&d->keep_lock);
}

/* Move queued keep-out requests to `pending`; true when a full scan is needed. */
static bool take_keep_requests(struct discover *d)
{
	pthread_mutex_lock(&d->keep_lock);
	bool overflow = d->keep_overflow;
	for (size_t i = 0; i < d->nkeep; i++) {
		if (d->npending == DISCOVER_KEEP_MAX) {
			overflow = true;
			break;
		}
		d->pending[d->npending++] = d->keep[i];
	}
	d->nkeep = 0;
	d->keep_overflow = false;
	pthread_mutex_unlock(&d->keep_lock);
	return overflow;
}

/*
 * A full scan's word on whether managed [s, e) is DONTFORK, for what raw
 * system calls marked or unmarked (the shim's madvise() tells the engine
 * itself).  @return 0, or -ECANCELED/-ENODEV from the callback.
 */
static int fork_op(struct discover *d, const struct maps_vma *v, uintptr_t s, uintptr_t e)
{
	if (!d->fork_ops || !v->has_flags)
		return 0;
	int err = d->fn(v->flags & MAPS_VM_DONTCOPY ? DISCOVER_DONTFORK : DISCOVER_DOFORK, s,
			e - s, d->arg);
	return err == -ECANCELED || err == -ENODEV ? err : 0;
}

/*
 * One candidate piece [s, e) of VMA @v: register it, leave it, or take it
 * out, and record what it is.  @return 1 registered, 0, or an error that
 * ends the scan.
 */
static int classify(struct discover *d, const struct maps_vma *v, uintptr_t s, uintptr_t e,
		    bool *nospace)
{
	bool full = v->has_flags, uffd = full && (v->flags & MAPS_VM_UFFD);
	/* a full scan trusts the VmFlags over the table (munlock, a failed
	 * registration worth retrying); a quick one trusts the table */
	bool keep = overlaps_pending(d, s, e) ||
		    (full ? (v->flags & d->keep_flags) : overlaps_kept_out(d, s, e));
	if (keep && full)
		d->st.kept_out++;
	if (keep) {
		/* locked or marked behind the wrappers' back: its pages come back */
		if (uffd) {
			int err = d->fn(DISCOVER_UNREGISTER, s, e - s, d->arg);
			if (err == -ECANCELED || err == -ENODEV)
				return err;
			d->st.unregistered++;
		}
		record(d, s, e, true);
		return 0;
	}
	if (was_managed(d->known, d->nknown, s, e)) {
		if (full ? uffd : d->fn(DISCOVER_MANAGED, s, e - s, d->arg) == 1) {
			record(d, s, e, false); /* registered by an earlier scan */
			return fork_op(d, v, s, e);
		}
		if (!full)
			d->st.dropped++;
	}
	if (*nospace) {
		record(d, s, e, true);
		return 0;
	}
	int err = d->fn(DISCOVER_REGISTER, s, e - s, d->arg);
	if (!err) {
		d->st.registered++;
		record(d, s, e, false);
		err = fork_op(d, v, s, e);
		return err ? err : 1;
	}
	if (err == -EAGAIN || err == -ECANCELED || err == -ENODEV)
		return err;
	d->st.failed++;
	*nospace = err == -ENOSPC;
	record(d, s, e, true);
	return 0;
}

int discover_scan(struct discover *d, bool full)
{
	d->st.scans++;
	if (take_keep_requests(d))
		full = true;
	struct maps_reader rd;
	int err = maps_open(&rd, full ? d->smaps : d->maps, d->buf, BUF_PAGES * PAGE);
	if (err)
		return err;
	if (full) {
		d->st.smaps_reads++;
		d->st.kept_out = 0;
	}
	d->nnext = 0;
	bool nospace = false;
	int registered = 0, got;
	struct maps_vma v;
	while ((got = maps_next(&rd, &v)) > 0) {
		if (!maps_candidate(&v))
			continue;
		uintptr_t pos = v.start, ps, pe;
		while (next_piece(d, &pos, v.end, &ps, &pe)) {
			int r = classify(d, &v, ps, pe, &nospace);
			if (r < 0) {
				maps_close(&rd);
				return r; /* the old table and the pending requests stay */
			}
			registered += r;
		}
	}
	maps_close(&rd);
	if (got < 0)
		return got;
	struct range *t = d->known;
	d->known = d->next;
	d->next = t;
	d->nknown = d->nnext;
	d->npending = 0;
	return nospace ? -ENOSPC : registered;
}

void discover_get_stats(struct discover *d, struct discover_stats *st)
{
	*st = d->st;
	st->known = d->nknown;
	st->managed_bytes = 0;
	for (size_t i = 0; i < d->nknown; i++)
		if (!(d->known[i].start & KEPT_OUT))
			st->managed_bytes += d->known[i].end - d->known[i].start;
}
