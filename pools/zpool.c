/*
 * zpool — the driver registry and the thin dispatch layer over it.
 * The pool struct itself lives in engine memory (pagesrc), like everything
 * else the engine allocates.
 */
#include "pools/zpool.h"

#include <errno.h>
#include <string.h>

#include "pools/pagesrc.h"

struct zpool {
	const struct zpool_driver *driver;
	void *pool;
	struct zpool_ops ops;
};

/* zsmalloc first: it is the default (densest; see docs/pools.md). */
static const struct zpool_driver *const drivers[] = {
	&zs_zpool_driver,
	&z3fold_zpool_driver,
	&zbud_zpool_driver,
};
#define NDRIVERS (sizeof(drivers) / sizeof(drivers[0]))

static const char *const driver_names[NDRIVERS + 1] = {
	"zsmalloc", "z3fold", "zbud", NULL,
};

static const struct zpool_driver *find_driver(const char *type)
{
	for (size_t i = 0; type && i < NDRIVERS; i++)
		if (!strcmp(drivers[i]->type, type))
			return drivers[i];
	return NULL;
}

bool zpool_has_pool(const char *type)
{
	return find_driver(type) != NULL;
}

size_t zpool_type_max_size(const char *type)
{
	const struct zpool_driver *d = find_driver(type);
	return d ? d->max_size : 0;
}

const char *const *zpool_driver_names(void)
{
	return driver_names;
}

int zpool_create_pool(const char *type, const struct zpool_ops *ops,
		      struct zpool **out)
{
	const struct zpool_driver *d = find_driver(type);
	if (!d)
		return -EINVAL;
	struct zpool *zp;
	int err = pagesrc_alloc(1, (void **)&zp);
	if (err)
		return err;
	memset(zp, 0, sizeof(*zp));
	zp->driver = d;
	if (ops)
		zp->ops = *ops;
	err = d->create(ops ? &zp->ops : NULL, zp, &zp->pool);
	if (err) {
		pagesrc_free(zp, 1);
		return err;
	}
	*out = zp;
	return 0;
}

void zpool_destroy_pool(struct zpool *pool)
{
	if (!pool)
		return;
	pool->driver->destroy(pool->pool);
	pagesrc_free(pool, 1);
}

const char *zpool_driver_name(const struct zpool *pool)
{
	return pool->driver->type;
}

size_t zpool_max_size(const struct zpool *pool)
{
	return pool->driver->max_size;
}

int zpool_malloc(struct zpool *pool, size_t size, unsigned long *handle)
{
	if (size == 0)
		return -EINVAL;
	if (size > pool->driver->max_size)
		return -ENOSPC;
	return pool->driver->malloc(pool->pool, size, handle);
}

void zpool_free(struct zpool *pool, unsigned long handle)
{
	pool->driver->free(pool->pool, handle);
}

void *zpool_map_handle(struct zpool *pool, unsigned long handle,
		       enum zpool_mapmode mm)
{
	return pool->driver->map(pool->pool, handle, mm);
}

void zpool_unmap_handle(struct zpool *pool, unsigned long handle)
{
	pool->driver->unmap(pool->pool, handle);
}

uint64_t zpool_get_total_pages(struct zpool *pool)
{
	return pool->driver->total_pages(pool->pool);
}

int zpool_shrink(struct zpool *pool, unsigned int pages, unsigned int *reclaimed)
{
	if (!pool->driver->reclaim_page || !pool->ops.evict)
		return -EOPNOTSUPP;
	unsigned int total = 0;
	int ret = 0;
	while (total < pages && (ret = pool->driver->reclaim_page(pool->pool)) == 0)
		total++;
	if (reclaimed)
		*reclaimed = total;
	/* some progress is success; otherwise say why there was none */
	return total ? 0 : ret;
}

int zpool_compact(struct zpool *pool, unsigned long *pages_freed)
{
	if (!pool->driver->compact)
		return -EOPNOTSUPP;
	return pool->driver->compact(pool->pool, pages_freed);
}

size_t zpool_class_stats(struct zpool *pool, struct zpool_class_stat *rows, size_t max)
{
	return pool->driver->class_stats ? pool->driver->class_stats(pool->pool, rows, max) : 0;
}

size_t zpool_driver_stats(struct zpool *pool, struct zpool_stat *rows, size_t max)
{
	return pool->driver->driver_stats ? pool->driver->driver_stats(pool->pool, rows, max) : 0;
}
