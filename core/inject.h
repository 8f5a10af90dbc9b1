/*
 * inject — one-shot fault injection for tests: an injection point fails
 * its nth call from now with a given errno, once.  uffd and writeback each
 * keep a table of points (one per operation) and ask it on every call; an
 * unarmed point costs one relaxed load.
 */
#ifndef ZSWAPU_INJECT_H
#define ZSWAPU_INJECT_H

#include <stdatomic.h>
#include <stdbool.h>

struct inject_point {
	_Atomic int err;
	_Atomic unsigned int countdown;
	_Atomic bool sticky;
};

/* inject_arm() : make the @nth call of inject_take() from now return -@err. */
void inject_arm(struct inject_point *p, int err, unsigned int nth);

/*
 * inject_arm_sticky() : the @nth call and every one after it return -@err
 * (a disk that stays broken), until inject_arm(p, 0, 0) disarms it.
 */
void inject_arm_sticky(struct inject_point *p, int err, unsigned int nth);

/* inject_take() : the injected error for this call (-errno, once), or 0. */
int inject_take(struct inject_point *p);

#endif
