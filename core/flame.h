/*
 * flame — stacks folded into a tree, written back as folded text
 * (`frame;frame;frame count`, the format flamegraph.pl and speedscope
 * read) or as an SVG flame graph of our own: no external tool.
 *
 * A struct flame is a tree of frames: the root is all stacks, each node
 * a frame with the sum of the counts of the stacks through it.  Stacks
 * are added root first, from frame names (flame_add) or from folded text
 * (flame_parse); equal paths merge.  The tree is written back sorted by
 * frame name, one line per distinct stack (flame_write_folded), or laid
 * out as a flame graph: a frame's width is its count's share of the
 * total, callers below callees, narrow frames (< 0.1 px) left out
 * (flame_write_svg).  The SVG is self-contained: each frame is a <g>
 * with a <title> (the browser shows it on hover: frame, count and unit,
 * share), and a few lines of inline script show the same in a status
 * line and zoom into a frame on click.  Names are XML-escaped; bytes that
 * are not valid UTF-8 become '?'.
 *
 * Memory comes from the engine's page source (pools/pagesrc.h), never
 * from malloc, so the profiler can build graphs inside the process it
 * profiles without calling into the allocator it watches.  Not
 * thread-safe: one thread builds and writes a struct flame.
 */
#ifndef ZSWAPU_FLAME_H
#define ZSWAPU_FLAME_H

#include <stddef.h>
#include <stdint.h>

/* Longest frame name kept (longer ones are cut). */
#define FLAME_NAME_MAX 512

struct flame;

/* flame_create() : an empty tree.  @return 0 or -ENOMEM. */
int flame_create(struct flame **out);
void flame_destroy(struct flame *f);

/*
 * flame_add() : add @count to the stack @frames[0] (outermost) ..
 * @frames[n-1] (innermost).  A ';' or a line break in a name becomes ':'
 * (they would break the folded format); an empty name becomes "[unknown]".
 * A count of 0 or n == 0 adds nothing.  @return 0 or -ENOMEM.
 */
int flame_add(struct flame *f, const char *const *frames, size_t n, uint64_t count);

/*
 * flame_parse() : add every line of folded text @text (@len bytes):
 * "a;b;c 123", the count after the last blank.  Empty lines are skipped.
 * @return the number of stacks added, or -EINVAL for a malformed line
 * (no count, a count that is not a non-negative integer, an empty
 * frame list) with its 1-based number in *@bad_line (if not NULL);
 * -ENOMEM.
 */
long flame_parse(struct flame *f, const char *text, size_t len, size_t *bad_line);

/* flame_total() : the sum of the counts added. */
uint64_t flame_total(const struct flame *f);

/* flame_stacks() : distinct stacks (lines flame_write_folded writes). */
size_t flame_stacks(const struct flame *f);

/* flame_write_folded() : one line per distinct stack, sorted.  0 or -errno. */
int flame_write_folded(struct flame *f, int fd);

enum flame_palette {
	FLAME_HOT, /* reds and yellows: code (fault sites) */
	FLAME_MEM, /* greens and blues: memory (allocation sites) */
};

struct flame_svg {
	const char *title;     /* the heading */
	const char *subtitle;  /* a line under it, or NULL */
	const char *unit;      /* what counts count: "bytes", "faults" */
	enum flame_palette palette;
	unsigned int width;    /* pixels; 0 = 1200 */
};

/*
 * flame_write_svg() : the flame graph of @f as one SVG document.  An
 * empty tree gives a graph with the root only and a note that there
 * were no samples.  @return 0 or -errno.
 */
int flame_write_svg(struct flame *f, const struct flame_svg *o, int fd);

#endif
