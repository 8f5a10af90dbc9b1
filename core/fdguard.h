/*
 * fdguard — the engine's long-lived file descriptors, kept out of the
 * program's way.
 *
 * The engine holds descriptors for as long as the process lives: the
 * userfaultfd (and one per forked child), an eventfd, the writeback file
 * and its two io_uring rings, the pagemap, the stats copy of stderr.  They
 * share one table with the program's, which may close a number it does not
 * own (a close-all loop, a double close after a thread reused the number,
 * closefrom() in a daemon).  Lost, the userfaultfd takes every stored page
 * with it; worse, the number is handed to the next open() and then names
 * some other file, so the writeback tier writes into it and reads someone
 * else's bytes back as pages.
 *
 * So: fdguard_adopt() moves a descriptor to the top of the table the
 * program normally uses (just under min(RLIMIT_NOFILE, 1024), where an
 * open() that takes the lowest free number does not reach), and marks it;
 * the shim's close(), close_range(), closefrom(), dup2() and dup3() leave
 * marked descriptors alone (preload/preload.c), with one line on stderr.
 * fdguard_close() unmarks and closes.
 *
 * The set is a bitmap of atomics: a lookup is one relaxed load, from any
 * thread, without a lock.
 */
#ifndef ZSWAPU_FDGUARD_H
#define ZSWAPU_FDGUARD_H

#include <stdbool.h>

/* Descriptors at or above this are not tracked (nor moved there). */
#define FDGUARD_MAX 4096

/*
 * fdguard_adopt() : move @fd up (close-on-exec) and mark it; returns the
 * descriptor to use from now on: the new one, or @fd itself (still marked)
 * when the table has no room up there.  A negative @fd is returned as is.
 */
int fdguard_adopt(int fd);

/* fdguard_forget() : unmark @fd, for a caller that closes it another way. */
void fdguard_forget(int fd);

/* fdguard_close() : unmark and close @fd (nothing for a negative one). */
void fdguard_close(int fd);

/* fdguard_owned() : whether @fd is one of the engine's. */
bool fdguard_owned(int fd);

/*
 * fdguard_next() : the first marked descriptor >= @from, or -1.  The shim
 * closes ranges around them.
 */
int fdguard_next(int from);

/*
 * A read of a userfaultfd installs a fork event's descriptor at the lowest
 * free number, and the handler lists it among its children only once it
 * handles the event, which may be a while behind.  A fork by another
 * program thread in between copies it into that child, which closes the
 * listed ones only: open there, it keeps the other child's registration
 * alive after the parent lets go, and that child's next missing fault
 * waits for a reader that never comes.
 *
 * fdguard_arrival_begin() / fdguard_arrival_end() : around such a read,
 * the end once the @forks fork events' descriptors it brought are adopted.
 * fdguard_arrival_listed() : one of them is listed (or closed).
 * fdguard_fork_prepare() : in the forking thread, before fork().
 * fdguard_fork_missed() : in the child, whether one may be in its table
 * unlisted (a stray: uffd.h, uffd_close_strays()).  False for a fork with
 * no read of a fork event near it and no read under way at the moment its
 * memory was copied: nearly every fork, which so costs three loads.
 */
void fdguard_arrival_begin(void);
void fdguard_arrival_end(unsigned int forks);
void fdguard_arrival_listed(void);
void fdguard_fork_prepare(void);
bool fdguard_fork_missed(void);
/* fdguard_reading() : whether a read is under way, between its
 * fdguard_arrival_begin() and fdguard_arrival_end(). */
bool fdguard_reading(void);

#endif
