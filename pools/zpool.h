/*
 * zpool — one interface over the three compressed-object allocators
 * (zbud, z3fold, zsmalloc), after the kernel's mm/zpool.c.
 *
 * A pool stores objects of 1..max bytes and names each by an opaque
 * handle.  A handle is not a pointer: to reach the bytes, map it, use the
 * pointer, unmap it.  Between map and unmap the object does not move
 * (zsmalloc compaction waits), so keep the window short and never call
 * another function on the same pool from the same thread inside it.
 *
 * All pools take their pages from pagesrc (never malloc) and are safe for
 * concurrent malloc/free/map/unmap from any number of threads.
 *
 * Errors are negative errno: -EINVAL (size 0, unknown driver), -ENOSPC (a
 * size the driver cannot hold), -ENOMEM (no page could be had).
 */
#ifndef ZSWAPU_ZPOOL_H
#define ZSWAPU_ZPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zpool;

enum zpool_mapmode {
	ZPOOL_MM_RW, /* read and write */
	ZPOOL_MM_RO, /* read only: writes through the pointer are lost */
	ZPOOL_MM_WO, /* write only: the old contents need not be readable */
};

/*
 * Callbacks from a pool to its user.  evict() is called by zpool_shrink()
 * for each live object of a page the pool wants to empty (zbud, z3fold:
 * the least recently allocated page first, as the seeds' LRU eviction).
 * It must move the data elsewhere and zpool_free() the handle, returning 0;
 * a non-zero return leaves the object where it is.
 */
struct zpool_ops {
	int (*evict)(struct zpool *pool, unsigned long handle, void *arg);
	void *arg;
};

/* One row of a pool's per-class table, as zsmalloc's debugfs `classes`. */
struct zpool_class_stat {
	unsigned int class_idx;
	unsigned int size;            /* object size served by the class */
	unsigned long almost_full;    /* zspages more than 3/4 used, not full */
	unsigned long almost_empty;   /* zspages at most 3/4 used, not empty */
	unsigned long obj_allocated;  /* object slots in the class's zspages */
	unsigned long obj_used;       /* live objects */
	unsigned long pages_used;
	unsigned int pages_per_zspage;
};

/* A named driver counter (zbud: "buddied", "unbuddied", ...). */
struct zpool_stat {
	const char *name;
	uint64_t value;
};

/* What every driver provides; the registry in zpool.c lists the drivers. */
struct zpool_driver {
	const char *type;
	size_t max_size; /* largest object the driver stores */
	int (*create)(const struct zpool_ops *ops, struct zpool *zpool, void **out);
	void (*destroy)(void *pool);
	int (*malloc)(void *pool, size_t size, unsigned long *handle);
	void (*free)(void *pool, unsigned long handle);
	void *(*map)(void *pool, unsigned long handle, enum zpool_mapmode mm);
	void (*unmap)(void *pool, unsigned long handle);
	uint64_t (*total_pages)(void *pool);
	/* optional (NULL: -EOPNOTSUPP) */
	/* evict the objects of one page (LRU order) and free it: 0, or -errno */
	int (*reclaim_page)(void *pool);
	int (*compact)(void *pool, unsigned long *pages_freed);
	/* fills up to max rows, returns how many there are in all */
	size_t (*class_stats)(void *pool, struct zpool_class_stat *rows, size_t max);
	size_t (*driver_stats)(void *pool, struct zpool_stat *rows, size_t max);
};

/* zpool_has_pool() : true when a driver of that name exists. */
bool zpool_has_pool(const char *type);

/*
 * zpool_type_max_size() : the largest object driver @type stores (what
 * zpool_max_size() says of its pools), before any pool exists: option
 * checks use it; 0 for an unknown type.
 */
size_t zpool_type_max_size(const char *type);

/* zpool_driver_names() : the drivers, NULL-terminated, default first. */
const char *const *zpool_driver_names(void);

/*
 * zpool_create_pool() : a new, empty pool of driver @type.  @ops may be
 * NULL (no eviction).  @return 0 and *@out, -EINVAL for an unknown type,
 * -ENOMEM.
 */
int zpool_create_pool(const char *type, const struct zpool_ops *ops,
		      struct zpool **out);

/* zpool_destroy_pool() : free the pool and every object still in it. */
void zpool_destroy_pool(struct zpool *pool);

const char *zpool_driver_name(const struct zpool *pool);

/* zpool_max_size() : the largest size zpool_malloc() accepts. */
size_t zpool_max_size(const struct zpool *pool);

/*
 * zpool_malloc() : room for @size bytes.  @return 0 and *@handle (never 0),
 * -EINVAL for size 0, -ENOSPC above zpool_max_size(), -ENOMEM.
 */
int zpool_malloc(struct zpool *pool, size_t size, unsigned long *handle);

void zpool_free(struct zpool *pool, unsigned long handle);

/* zpool_map_handle() : pointer to the object's bytes until unmap. */
void *zpool_map_handle(struct zpool *pool, unsigned long handle,
		       enum zpool_mapmode mm);
void zpool_unmap_handle(struct zpool *pool, unsigned long handle);

/* zpool_get_total_pages() : pages the pool holds (its memory cost). */
uint64_t zpool_get_total_pages(struct zpool *pool);

/* zpool_shrink() : evict objects to free up to @pages pages. */
int zpool_shrink(struct zpool *pool, unsigned int pages, unsigned int *reclaimed);

/* zpool_compact() : move objects to free pages; -EOPNOTSUPP if the driver can't. */
int zpool_compact(struct zpool *pool, unsigned long *pages_freed);

size_t zpool_class_stats(struct zpool *pool, struct zpool_class_stat *rows, size_t max);
size_t zpool_driver_stats(struct zpool *pool, struct zpool_stat *rows, size_t max);

/* Driver ops tables, one per pools/<driver>.c. */
extern const struct zpool_driver zs_zpool_driver;
extern const struct zpool_driver z3fold_zpool_driver;
extern const struct zpool_driver zbud_zpool_driver;

#endif
