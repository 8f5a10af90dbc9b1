/* inject — see inject.h. */
#include "core/inject.h"

void inject_arm(struct inject_point *p, int err, unsigned int nth)
{
	atomic_store(&p->sticky, false);
	atomic_store(&p->countdown, nth);
	atomic_store(&p->err, err);
}

void inject_arm_sticky(struct inject_point *p, int err, unsigned int nth)
{
	atomic_store(&p->sticky, true);
	atomic_store(&p->countdown, nth);
	atomic_store(&p->err, err);
}

int inject_take(struct inject_point *p)
{
	if (!atomic_load_explicit(&p->err, memory_order_relaxed))
		return 0;
	unsigned int c = atomic_load(&p->countdown);
	while (c > 0 && !atomic_compare_exchange_weak(&p->countdown, &c, c - 1))
		;
	if (atomic_load(&p->sticky))
		return c <= 1 ? -atomic_load(&p->err) : 0;
	if (c != 1)
		return 0;
	return -atomic_exchange(&p->err, 0);
}
