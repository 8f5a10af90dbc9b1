/*
 * orphans — a managed parent that ends while a forked child still reads
 * its stored pages through the parent's engine (tests/tools/run.sh).
 * The parent fills MIB mebibytes with a pattern, leaves them cold for
 * 2 s (the limit stores them), says how many are not present (stored:
 * 0 natively), forks, and ends as HOW says:
 *   exit    return from main (exit handlers run)
 *   _exit   _exit(0) right after the fork
 *   daemon  daemon(1, 1): glibc's forks and _exit()s the parent itself;
 *           the daemon then rewrites its pages, leaves them cold 2 s
 *           (under zswapu its own engine stores them) and checks them
 *   term    raise(SIGTERM), default action
 *   abort   abort()
 *   exec    execl("/bin/true"): the process lives on as another program
 *   kill    SIGKILL right after the fork: nothing is handed over, and the
 *           child must never read a wrong page: each one the parent still
 *           kept for it raises SIGBUS (under zswapu; counted as lost, the
 *           check goes on with the next page), every other reads right
 *   detach  a daemon made as redis makes one: fork(), the parent returns
 *           from main; the child lives on as "daemon" does
 *   worker  the parent lives on until the child (a prefork worker) has
 *           mapped and filled MIB mebibytes of its own and its engine
 *           has started (under zswapu; 5 s natively), and says the
 *           engine's limit (raised by what it inherited).  The worker
 *           serves requests for 3 s while its pages stay cold (its
 *           engine stores them), says how many are not present, then
 *           serves 3 s more, by when the parent has ended and handed it
 *           the pages it inherited (its engine takes those on too), says
 *           how many of those are not present and its limit (back to
 *           the one every process has), checks both, and ends by _exit()
 * The child (daemon's own child for "daemon") waits until the parent is
 * gone, then counts its pages that are not present yet and those that
 * read wrong, and prints both.  Its exit status: 0 when none read wrong.
 *
 * usage: orphans HOW MIB
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static unsigned char pattern(size_t page, size_t i)
{
	return (unsigned char)(page * 31 + i / 64 + 1);
}

/* Pages of [m, m + n pages) not present (pagemap bit 63), or -1. */
static long absent(const unsigned char *m, size_t n)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return -1;
	long count = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t e;
		if (pread(fd, &e, sizeof(e), (off_t)(((uintptr_t)m / PAGE + i) * 8)) != 8) {
			count = -1;
			break;
		}
		count += !(e >> 63);
	}
	close(fd);
	return count;
}

/* Does page @p of @m differ from the pattern? */
static bool page_wrong(const unsigned char *m, size_t p)
{
	for (size_t i = 0; i < PAGE; i += 64)
		if (m[p * PAGE + i] != pattern(p, i))
			return true;
	return false;
}

static size_t wrong_pages(const unsigned char *m, size_t n)
{
	size_t wrong = 0;
	for (size_t p = 0; p < n; p++)
		wrong += page_wrong(m, p);
	return wrong;
}

static sigjmp_buf bus_jump;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jump, 1);
}

/* wrong_pages() where a page may raise SIGBUS: those are counted in *@lost. */
static size_t wrong_or_lost(const unsigned char *m, size_t n, size_t *lost)
{
	struct sigaction sa = { .sa_handler = on_bus };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	volatile size_t wrong = 0;
	*lost = 0;
	for (volatile size_t p = 0; p < n; p++) {
		if (sigsetjmp(bus_jump, 1)) {
			(*lost)++;
			continue;
		}
		wrong += page_wrong(m, p);
	}
	signal(SIGBUS, SIG_DFL);
	return wrong;
}

static int child(const unsigned char *m, size_t n, pid_t parent, bool bus)
{
	/* the parent must be gone before a page is touched */
	for (int i = 0; i < 1000 && getppid() == parent; i++)
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	if (getppid() == parent) {
		printf("child: the parent did not end\n");
		return 2;
	}
	long gone = absent(m, n);
	if (bus) {
		size_t lost, wrong = wrong_or_lost(m, n, &lost);
		printf("child: %ld of %zu pages not present; %zu raised SIGBUS; %zu read wrong\n",
		       gone, n, lost, wrong);
		return wrong != 0;
	}
	size_t wrong = wrong_pages(m, n);
	printf("child: %ld of %zu pages not present; %zu read wrong\n", gone, n, wrong);
	return wrong != 0;
}

/* @n pages of private memory with the pattern in them, or NULL. */
static unsigned char *filled(size_t n)
{
	unsigned char *m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	for (size_t p = 0; p < n; p++)
		for (size_t i = 0; i < PAGE; i++)
			m[p * PAGE + i] = pattern(p, i);
	return m;
}

/* Requests for @ms: a small allocation each, as a server makes. */
static int serve(int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		char *req = malloc(256);
		if (!req)
			return 2;
		snprintf(req, 256, "request %d", i);
		free(req);
		nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
	}
	return 0;
}

/*
 * A daemon's life after its parent is gone: it rewrites its pages, then
 * serves requests (each a small allocation) for 2 s while they stay cold;
 * under zswapu an engine of its own stores them.  Then it checks them.
 */
static int daemon_life(unsigned char *m, size_t n)
{
	for (size_t p = 0; p < n; p++)
		m[p * PAGE] ^= 0x55;
	if (serve(2000))
		return 2;
	printf("daemon: %ld of %zu pages not present after 2 s cold\n", absent(m, n), n);
	fflush(stdout);
	for (size_t p = 0; p < n; p++)
		m[p * PAGE] ^= 0x55;
	size_t wrong = wrong_pages(m, n);
	printf("daemon: %zu read wrong\n", wrong);
	return wrong != 0;
}

/* The limit the process's engine holds now; 0 without one (natively). */
static size_t limit_now(void)
{
	size_t (*fn)(void) = (size_t(*)(void))dlsym(RTLD_DEFAULT, "zswapu_limit");
	return fn ? fn() : 0;
}

static int worker(const unsigned char *inherited, size_t n, int tell)
{
	unsigned char *m = filled(n);
	if (!m)
		return 2;
	/* its engine starts about a second after the fork (natively, none:
	 * 5 s); the parent waits for the word */
	size_t first = limit_now();
	for (int i = 0; i < 50 && limit_now() == first; i++)
		if (serve(100))
			return 2;
	printf("worker: limit %zu while the parent lives\n", limit_now());
	fflush(stdout);
	if (write(tell, "", 1) != 1)
		return 2;
	close(tell);
	if (serve(3000))
		return 2;
	printf("worker: %ld of %zu pages of its own not present after 3 s cold\n", absent(m, n), n);
	if (serve(3000))
		return 2;
	printf("worker: %ld of %zu inherited pages not present once the parent is gone\n",
	       absent(inherited, n), n);
	printf("worker: limit %zu once the parent is gone\n", limit_now());
	size_t wrong = wrong_pages(m, n), iwrong = wrong_pages(inherited, n);
	printf("worker: %zu of its own read wrong, %zu inherited\n", wrong, iwrong);
	printf("worker: pid %d\n", (int)getpid());
	fflush(stdout);
	return wrong || iwrong;
}

int main(int argc, char **argv)
{
	if (argc != 3 || atoi(argv[2]) <= 0) {
		fprintf(stderr, "usage: orphans exit|_exit|daemon|term|abort|exec|detach|worker|kill MIB\n");
		return 2;
	}
	const char *how = argv[1];
	size_t n = (size_t)atoi(argv[2]) * 256;
	unsigned char *m = filled(n);
	if (!m)
		return 2;
	sleep(2);
	printf("parent: %ld of %zu pages not present at the fork\n", absent(m, n), n);
	fflush(stdout);
	pid_t self = getpid();
	if (!strcmp(how, "daemon")) {
		if (daemon(1, 1))
			return 2;
		int rc = child(m, n, self, false);
		return daemon_life(m, n) || rc;
	}
	int word[2];
	if (pipe(word))
		return 2;
	pid_t pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0 && !strcmp(how, "detach")) {
		int rc = child(m, n, self, false);
		return daemon_life(m, n) || rc;
	}
	if (pid == 0 && !strcmp(how, "worker")) {
		close(word[0]);
		_exit(worker(m, n, word[1])); /* as multiprocessing's workers end */
	}
	close(word[1]);
	if (pid == 0)
		return child(m, n, self, !strcmp(how, "kill"));
	char c;
	if (!strcmp(how, "worker") && read(word[0], &c, 1) < 0)
		return 2;
	if (!strcmp(how, "_exit"))
		_exit(0);
	if (!strcmp(how, "term"))
		raise(SIGTERM);
	if (!strcmp(how, "abort"))
		abort();
	if (!strcmp(how, "kill"))
		kill(self, SIGKILL);
	if (!strcmp(how, "exec"))
		execl("/bin/true", "true", (char *)NULL);
	return 0;
}
