/*
 * flame — see flame.h.  The tree's nodes, names and the struct itself
 * live in an arena of page-source runs, freed all at once.
 */
#include "core/flame.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pools/pagesrc.h"

#define CHUNK_PAGES 256 /* 1 MiB arena chunks */
#define ROW 16          /* pixels per frame row */
#define TOP 60          /* title, subtitle */
#define BOTTOM 36       /* status line */
#define PAD 10
#define CHAR_PX 7.0     /* average width of a 12 px Verdana character */
#define MIN_PX 0.1      /* narrower frames are left out */

struct node {
	const char *name;
	uint64_t total, self;
	struct node *parent, *child, *next;
	struct node *hnext; /* chain in the (parent, name) hash */
	uint32_t hash;
	unsigned int depth;
};

struct chunk {
	struct chunk *next;
	size_t npages, used;
};

struct flame {
	struct chunk *chunks;
	struct node root;
	size_t stacks, nodes;
	unsigned int maxdepth;
	/* children found by (parent, name): a wide node must not cost a
	 * walk of its siblings per stack */
	struct node **buckets;
	size_t nbuckets, bucket_pages;
};

/* ---- arena ---- */

static void *arena_alloc(struct chunk **head, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	size_t hdr = (sizeof(struct chunk) + 15) & ~(size_t)15;
	struct chunk *c = *head;
	if (!c || c->used + n > c->npages * PAGESRC_PAGE_SIZE) {
		size_t np = (hdr + n + PAGESRC_PAGE_SIZE - 1) / PAGESRC_PAGE_SIZE;
		if (np < CHUNK_PAGES)
			np = CHUNK_PAGES;
		if (np > PAGESRC_MAX_RUN || pagesrc_alloc(np, (void **)&c))
			return NULL;
		c->npages = np;
		c->used = hdr;
		c->next = *head;
		*head = c;
	}
	void *p = (char *)c + c->used;
	c->used += n;
	return p;
}

int flame_create(struct flame **out)
{
	struct chunk *head = NULL;
	struct flame *f = arena_alloc(&head, sizeof(*f));
	if (!f)
		return -ENOMEM;
	memset(f, 0, sizeof(*f));
	f->chunks = head;
	f->root.name = "all";
	*out = f;
	return 0;
}

void flame_destroy(struct flame *f)
{
	if (!f)
		return;
	if (f->buckets)
		pagesrc_free(f->buckets, f->bucket_pages);
	for (struct chunk *c = f->chunks, *next; c; c = next) {
		next = c->next;
		pagesrc_free(c, c->npages);
	}
}

/* ---- building ---- */

static uint32_t hash_name(const char *s);

static size_t bucket_of(const struct flame *f, const struct node *parent, uint32_t h)
{
	return (size_t)(((uintptr_t)parent >> 4) * 0x9E3779B97F4A7C15ULL ^ h) & (f->nbuckets - 1);
}

/* Twice the buckets (up to one page-source run of them), chains moved. */
static void grow(struct flame *f)
{
	size_t nb = f->nbuckets ? 2 * f->nbuckets : 1024;
	size_t np = (nb * sizeof(struct node *) + PAGESRC_PAGE_SIZE - 1) / PAGESRC_PAGE_SIZE;
	struct node **b;
	if (np > PAGESRC_MAX_RUN || pagesrc_alloc(np, (void **)&b))
		return; /* longer chains, still correct */
	memset(b, 0, nb * sizeof(*b));
	struct node **old = f->buckets;
	size_t oldn = f->nbuckets, oldp = f->bucket_pages;
	f->buckets = b;
	f->nbuckets = nb;
	f->bucket_pages = np;
	for (size_t i = 0; i < oldn; i++)
		for (struct node *c = old[i], *next; c; c = next) {
			next = c->hnext;
			size_t k = bucket_of(f, c->parent, c->hash);
			c->hnext = b[k];
			b[k] = c;
		}
	if (old)
		pagesrc_free(old, oldp);
}

/* The child of @n named @s (@len bytes, sanitised as flame_add says), made if new. */
static struct node *child(struct flame *f, struct node *n, const char *s, size_t len)
{
	char name[FLAME_NAME_MAX + 1];
	if (len > FLAME_NAME_MAX)
		len = FLAME_NAME_MAX;
	if (len == 0) {
		s = "[unknown]";
		len = strlen(s);
	}
	for (size_t i = 0; i < len; i++)
		name[i] = s[i] == ';' || s[i] == '\n' || s[i] == '\r' ? ':' : s[i];
	name[len] = '\0';
	uint32_t h = hash_name(name);
	if (f->nodes >= f->nbuckets)
		grow(f);
	if (!f->nbuckets)
		return NULL;
	size_t k = bucket_of(f, n, h);
	for (struct node *c = f->buckets[k]; c; c = c->hnext)
		if (c->parent == n && c->hash == h && !strcmp(c->name, name))
			return c;
	struct node *c = arena_alloc(&f->chunks, sizeof(*c));
	char *copy = arena_alloc(&f->chunks, len + 1);
	if (!c || !copy)
		return NULL;
	memcpy(copy, name, len + 1);
	*c = (struct node){ .name = copy, .parent = n, .next = n->child, .hnext = f->buckets[k],
			    .hash = h, .depth = n->depth + 1 };
	n->child = c;
	f->buckets[k] = c;
	f->nodes++;
	if (c->depth > f->maxdepth)
		f->maxdepth = c->depth;
	return c;
}

/* Count @count at leaf @n and on the way to the root. */
static void count_at(struct flame *f, struct node *n, uint64_t count)
{
	if (n->self == 0)
		f->stacks++;
	n->self += count;
	for (; n; n = n->parent)
		n->total += count;
}

int flame_add(struct flame *f, const char *const *frames, size_t n, uint64_t count)
{
	if (!n || !count)
		return 0;
	struct node *at = &f->root;
	for (size_t i = 0; i < n; i++) {
		at = child(f, at, frames[i] ? frames[i] : "", frames[i] ? strlen(frames[i]) : 0);
		if (!at)
			return -ENOMEM;
	}
	count_at(f, at, count);
	return 0;
}

/* One folded line (no line break): 0 added, 1 empty, -EINVAL, -ENOMEM. */
static int parse_line(struct flame *f, const char *s, size_t len)
{
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		len--;
	if (!len)
		return 1;
	size_t sp = len;
	while (sp && s[sp - 1] != ' ' && s[sp - 1] != '\t')
		sp--;
	if (sp == 0 || sp == len)
		return -EINVAL;
	uint64_t count = 0;
	for (size_t i = sp; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || count > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		count = count * 10 + (uint64_t)(s[i] - '0');
	}
	size_t flen = sp - 1;
	while (flen && (s[flen - 1] == ' ' || s[flen - 1] == '\t'))
		flen--;
	if (!flen)
		return -EINVAL;
	if (!count)
		return 0;
	struct node *at = &f->root;
	for (size_t i = 0; i <= flen;) {
		size_t k = i;
		while (k < flen && s[k] != ';')
			k++;
		at = child(f, at, s + i, k - i);
		if (!at)
			return -ENOMEM;
		i = k + 1;
	}
	count_at(f, at, count);
	return 0;
}

long flame_parse(struct flame *f, const char *text, size_t len, size_t *bad_line)
{
	long added = 0;
	size_t line = 0;
	for (size_t i = 0; i < len;) {
		size_t k = i;
		while (k < len && text[k] != '\n')
			k++;
		line++;
		int r = parse_line(f, text + i, k - i);
		if (r < 0) {
			if (bad_line)
				*bad_line = line;
			return r;
		}
		added += r == 0;
		i = k + 1;
	}
	return added;
}

uint64_t flame_total(const struct flame *f)
{
	return f->root.total;
}

size_t flame_stacks(const struct flame *f)
{
	return f->stacks;
}

/* ---- sorting (children by name: a stable layout and sorted folded lines) ---- */

static struct node *merge(struct node *a, struct node *b)
{
	struct node head = { .next = NULL }, *t = &head;
	while (a && b) {
		struct node **pick = strcmp(a->name, b->name) <= 0 ? &a : &b;
		t->next = *pick;
		t = t->next;
		*pick = (*pick)->next;
	}
	t->next = a ? a : b;
	return head.next;
}

static struct node *sort_list(struct node *l)
{
	if (!l || !l->next)
		return l;
	struct node *slow = l, *fast = l->next;
	while (fast && fast->next) {
		slow = slow->next;
		fast = fast->next->next;
	}
	struct node *b = slow->next;
	slow->next = NULL;
	return merge(sort_list(l), sort_list(b));
}

static void sort_tree(struct node *n)
{
	n->child = sort_list(n->child);
	for (struct node *c = n->child; c; c = c->next)
		sort_tree(c);
}

/* ---- output ---- */

struct out {
	int fd, err;
	size_t n;
	char buf[16384];
};

/* A buffered writer to @fd, from the flame's arena (no malloc in the engine). */
static struct out *out_new(struct flame *f, int fd)
{
	struct out *o = arena_alloc(&f->chunks, sizeof(*o));
	if (o) {
		o->fd = fd;
		o->err = 0;
		o->n = 0;
	}
	return o;
}

static void flush(struct out *o)
{
	for (size_t off = 0; off < o->n && !o->err;) {
		ssize_t w = write(o->fd, o->buf + off, o->n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			o->err = w < 0 ? -errno : -EIO;
		else
			off += (size_t)w;
	}
	o->n = 0;
}

static void put(struct out *o, const char *s, size_t len)
{
	while (len) {
		if (o->n == sizeof(o->buf))
			flush(o);
		size_t k = sizeof(o->buf) - o->n < len ? sizeof(o->buf) - o->n : len;
		memcpy(o->buf + o->n, s, k);
		o->n += k;
		s += k;
		len -= k;
	}
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
	char b[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, b, (size_t)n < sizeof(b) ? (size_t)n : sizeof(b) - 1);
}

/* Length of the valid UTF-8 sequence at @s (of @len bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t len)
{
	size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
		 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (n == 0 || n > len || (n == 2 && s[0] < 0xc2))
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* @s (at most @max bytes of it) as XML character data / attribute value. */
static void put_xml(struct out *o, const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len > max)
		len = max;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		const char *ent = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;"
				: c == '"' ? "&quot;" : c == '\'' ? "&apos;" : NULL;
		if (ent) {
			puts_(o, ent);
			i++;
			continue;
		}
		if (c < 0x20) { /* not allowed in XML 1.0 (tab aside) */
			put(o, "?", 1);
			i++;
			continue;
		}
		size_t n = utf8_len((const unsigned char *)s + i, len - i);
		if (n == 0) {
			put(o, "?", 1);
			i++;
		} else {
			put(o, s + i, n);
			i += n;
		}
	}
}

/* Leaf lines: the path from the root's child to @n, then self. */
static void fold(struct out *o, const struct node *n, const char **path)
{
	if (n->self && n->depth) {
		unsigned int d = n->depth;
		for (const struct node *p = n; p->depth; p = p->parent)
			path[--d] = p->name;
		for (unsigned int i = 0; i < n->depth; i++) {
			if (i)
				put(o, ";", 1);
			puts_(o, path[i]);
		}
		putf(o, " %llu\n", (unsigned long long)n->self);
	}
	for (const struct node *c = n->child; c; c = c->next)
		fold(o, c, path);
}

int flame_write_folded(struct flame *f, int fd)
{
	const char **path = arena_alloc(&f->chunks, (f->maxdepth + 1) * sizeof(*path));
	if (!path)
		return -ENOMEM;
	sort_tree(&f->root);
	struct out *o = out_new(f, fd);
	if (!o)
		return -ENOMEM;
	fold(o, &f->root, path);
	flush(o);
	return o->err;
}

static uint32_t hash_name(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void color(const char *name, enum flame_palette p, char *buf, size_t len)
{
	uint32_t h = hash_name(name);
	unsigned int a = h % 256, b = (h >> 8) % 256, c = (h >> 16) % 256;
	if (p == FLAME_MEM)
		snprintf(buf, len, "rgb(%u,%u,%u)", a * 60 / 256, 170 + b * 70 / 256,
			 120 + c * 110 / 256);
	else
		snprintf(buf, len, "rgb(%u,%u,%u)", 205 + a * 50 / 256, b * 230 / 256,
			 c * 55 / 256);
}

struct layout {
	struct out *o;
	const struct flame_svg *opt;
	double scale; /* pixels per count */
	unsigned int height;
	uint64_t total;
};

static void frame_svg(struct layout *l, const struct node *n, double x)
{
	double w = (double)n->total * l->scale;
	if (w < MIN_PX)
		return;
	struct out *o = l->o;
	double y = l->height - BOTTOM - (n->depth + 1) * ROW;
	char fill[32];
	color(n->name, l->opt->palette, fill, sizeof(fill));
	puts_(o, "<g><title>");
	put_xml(o, n->name, FLAME_NAME_MAX);
	putf(o, " (%llu ", (unsigned long long)n->total);
	put_xml(o, l->opt->unit ? l->opt->unit : "samples", 64);
	putf(o, ", %.2f%%)</title><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" "
		"fill=\"%s\" rx=\"2\" ry=\"2\"/><text x=\"%.1f\" y=\"%.1f\">",
	     l->total ? 100.0 * (double)n->total / (double)l->total : 0.0, x, y, w, ROW - 1,
	     n->depth ? fill : "rgb(200,200,200)", x + 3, y + ROW - 4.5);
	size_t fit = w > 3 * CHAR_PX ? (size_t)((w - 6) / CHAR_PX) : 0;
	size_t len = strlen(n->name);
	if (fit >= len) {
		put_xml(o, n->name, len);
	} else if (fit >= 3) {
		put_xml(o, n->name, fit - 2);
		puts_(o, "..");
	}
	puts_(o, "</text></g>\n");
	for (const struct node *c = n->child; c; c = c->next) {
		frame_svg(l, c, x);
		x += (double)c->total * l->scale;
	}
}

/*
 * Hover: the frame's title in the status line.  Click: zoom, so that the
 * clicked frame fills the width (its callees scale with it, frames
 * outside it hide, its callers stay full width); click the root or
 * "Reset zoom" to undo.  Labels are re-cut to the new widths.
 */
static const char script[] =
	"<script type=\"text/ecmascript\"><![CDATA[\n"
	"var svg = document.documentElement, det, W, pad;\n"
	"function init() { det = document.getElementById('details');\n"
	"  W = +svg.getAttribute('width'); pad = +svg.getAttribute('data-pad');\n"
	"  var gs = document.getElementsByTagName('g');\n"
	"  for (var i = 0; i < gs.length; i++) { var r = gs[i].querySelector('rect');\n"
	"    r.setAttribute('data-x', r.getAttribute('x'));\n"
	"    r.setAttribute('data-w', r.getAttribute('width'));\n"
	"    gs[i].onmouseover = function() { det.textContent = this.querySelector('title').textContent; };\n"
	"    gs[i].onmouseout = function() { det.textContent = ' '; };\n"
	"    gs[i].onclick = function() { zoom(this); }; } }\n"
	"function label(g) { var t = g.querySelector('title').textContent, r = g.querySelector('rect');\n"
	"  var name = t.substring(0, t.lastIndexOf(' (')), w = +r.getAttribute('width');\n"
	"  var fit = w > 21 ? Math.floor((w - 6) / 7) : 0, x = g.querySelector('text');\n"
	"  x.setAttribute('x', +r.getAttribute('x') + 3);\n"
	"  x.textContent = fit >= name.length ? name : fit >= 3 ? name.substring(0, fit - 2) + '..' : ''; }\n"
	"function zoom(g) { var r = g.querySelector('rect'), zx = +r.getAttribute('data-x'),\n"
	"  zw = +r.getAttribute('data-w'), zy = +r.getAttribute('y'), k = (W - 2 * pad) / zw;\n"
	"  var gs = document.getElementsByTagName('g');\n"
	"  for (var i = 0; i < gs.length; i++) { var q = gs[i].querySelector('rect'),\n"
	"    x = +q.getAttribute('data-x'), w = +q.getAttribute('data-w'), y = +q.getAttribute('y');\n"
	"    if (y >= zy) { q.setAttribute('x', pad); q.setAttribute('width', W - 2 * pad);\n"
	"      gs[i].style.display = (x <= zx + 1e-6 && x + w >= zx + zw - 1e-6) ? '' : 'none'; }\n"
	"    else if (x >= zx - 1e-6 && x + w <= zx + zw + 1e-6) { gs[i].style.display = '';\n"
	"      q.setAttribute('x', pad + (x - zx) * k); q.setAttribute('width', w * k); }\n"
	"    else gs[i].style.display = 'none';\n"
	"    if (gs[i].style.display == '') label(gs[i]); } }\n"
	"function unzoom() { var gs = document.getElementsByTagName('g');\n"
	"  for (var i = 0; i < gs.length; i++) { var q = gs[i].querySelector('rect');\n"
	"    q.setAttribute('x', q.getAttribute('data-x')); q.setAttribute('width', q.getAttribute('data-w'));\n"
	"    gs[i].style.display = ''; label(gs[i]); } }\n"
	"]]></script>\n";

int flame_write_svg(struct flame *f, const struct flame_svg *opt, int fd)
{
	struct out *o = out_new(f, fd);
	if (!o)
		return -ENOMEM;
	sort_tree(&f->root);
	unsigned int width = opt->width ? opt->width : 1200;
	struct layout l = {
		.o = o,
		.opt = opt,
		.total = f->root.total,
		.height = TOP + (f->maxdepth + 1) * ROW + BOTTOM,
	};
	l.scale = l.total ? (width - 2.0 * PAD) / (double)l.total : 0;
	putf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
		"<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" "
		"height=\"%u\" viewBox=\"0 0 %u %u\" data-pad=\"%d\" onload=\"init()\">\n",
	     width, l.height, width, l.height, PAD);
	puts_(o, "<style type=\"text/css\">\n"
		 "text { font-family: Verdana, sans-serif; font-size: 12px; fill: rgb(0,0,0); }\n"
		 "#title { font-size: 17px; text-anchor: middle; }\n"
		 "#subtitle { text-anchor: middle; fill: rgb(80,80,80); }\n"
		 "g rect:hover { stroke: rgb(0,0,0); stroke-width: 0.5; cursor: pointer; }\n"
		 "#unzoom { cursor: pointer; fill: rgb(0,0,160); }\n"
		 "</style>\n");
	puts_(o, script);
	putf(o, "<rect x=\"0\" y=\"0\" width=\"%u\" height=\"%u\" fill=\"rgb(245,245,238)\"/>\n",
	     width, l.height);
	putf(o, "<text id=\"title\" x=\"%u\" y=\"24\">", width / 2);
	put_xml(o, opt->title ? opt->title : "Flame graph", 256);
	puts_(o, "</text>\n");
	if (opt->subtitle || !l.total) {
		putf(o, "<text id=\"subtitle\" x=\"%u\" y=\"44\">", width / 2);
		put_xml(o, l.total ? opt->subtitle : "no samples", 512);
		puts_(o, "</text>\n");
	}
	putf(o, "<text id=\"unzoom\" x=\"%d\" y=\"24\" onclick=\"unzoom()\">Reset zoom</text>\n",
	     PAD);
	putf(o, "<text id=\"details\" x=\"%d\" y=\"%u\"> </text>\n", PAD, l.height - 12);
	if (l.total) {
		frame_svg(&l, &f->root, PAD);
	} else { /* the root alone, so the document has its usual shape */
		putf(o, "<g><title>all (0 ");
		put_xml(o, opt->unit ? opt->unit : "samples", 64);
		putf(o, ")</title><rect x=\"%d\" y=\"%u\" width=\"%u\" height=\"%d\" "
			"fill=\"rgb(200,200,200)\"/><text x=\"%d\" y=\"%.1f\">all</text></g>\n",
		     PAD, l.height - BOTTOM - ROW, width - 2 * PAD, ROW - 1, PAD + 3,
		     l.height - BOTTOM - 4.5);
	}
	puts_(o, "</svg>\n");
	flush(o);
	return o->err;
}
