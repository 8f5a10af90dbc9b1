/*
 * list — the intrusive circular doubly-linked list the pool drivers file
 * their pages on (zbud, z3fold).  A head is a struct zlist linked to
 * itself; an element embeds a struct zlist and is reached back from it
 * with zlist_entry().  No locking: the caller holds whatever lock guards
 * the list.  zlist_del() leaves the node linked to itself, so deleting it
 * again, or testing it with zlist_empty(), is safe.
 */
#ifndef ZSWAPU_POOLS_LIST_H
#define ZSWAPU_POOLS_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct zlist {
	struct zlist *prev, *next;
};

#define zlist_entry(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

static inline void zlist_init(struct zlist *l)
{
	l->prev = l->next = l;
}

static inline bool zlist_empty(const struct zlist *l)
{
	return l->next == l;
}

/* Link @n right after @head: the list's newest element. */
static inline void zlist_add(struct zlist *n, struct zlist *head)
{
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
}

static inline void zlist_del(struct zlist *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	zlist_init(n);
}

/* Move @n, on this list or another, to right after @head. */
static inline void zlist_move(struct zlist *n, struct zlist *head)
{
	zlist_del(n);
	zlist_add(n, head);
}

#endif
