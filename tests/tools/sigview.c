/*
 * sigview — what a program sees of its signal dispositions
 * (tests/tools/run.sh runs it natively and under zswapu: the output and
 * the exit status must be the same).  zswapu puts a handler of its own
 * where the program leaves a fatal signal at SIG_DFL; no way of asking
 * or setting may show it: each of sigaction, signal, bsd_signal,
 * sysv_signal and sigset reports SIG_DFL, sets a handler that runs, and
 * restores what it got back.  Then SIGUSR1 at its default action ends
 * the process (status 128 + 10 in a shell).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* glibc has it, its header no longer declares it */
extern __sighandler_t bsd_signal(int sig, __sighandler_t h);
/* deprecated, and still called by old programs */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static volatile sig_atomic_t got;

static void on(int sig)
{
	got = sig;
}

static const char *name(__sighandler_t h)
{
	return h == SIG_DFL ? "SIG_DFL" : h == SIG_IGN ? "SIG_IGN" : h == on ? "ours" : "other";
}

typedef __sighandler_t (*setter)(int, __sighandler_t);

static __sighandler_t via_sigaction(int sig, __sighandler_t h)
{
	struct sigaction a, o;
	memset(&a, 0, sizeof(a));
	a.sa_handler = h;
	return sigaction(sig, &a, &o) ? SIG_ERR : o.sa_handler;
}

int main(void)
{
	static const struct {
		const char *what;
		setter set;
	} ways[] = {
		{ "sigaction", via_sigaction }, { "signal", signal },     { "bsd_signal", bsd_signal },
		{ "sysv_signal", sysv_signal }, { "sigset", sigset },
	};
	static const int sigs[] = { SIGTERM, SIGSEGV, SIGUSR1, SIGINT, SIGQUIT };
	for (size_t w = 0; w < sizeof(ways) / sizeof(*ways); w++)
		for (size_t i = 0; i < sizeof(sigs) / sizeof(*sigs); i++) {
			int sig = sigs[i];
			__sighandler_t old = ways[w].set(sig, on);
			got = 0;
			raise(sig);
			__sighandler_t mine = ways[w].set(sig, old);
			printf("%s %d: was %s, handler ran %s, then %s\n", ways[w].what, sig, name(old),
			       got == sig ? "yes" : "no", name(mine));
		}
	struct sigaction q;
	sigaction(SIGUSR1, NULL, &q);
	printf("SIGUSR1 now %s, flags %#x\n", name(q.sa_handler), (unsigned)q.sa_flags);
	fflush(stdout);
	raise(SIGUSR1);
	printf("not reached\n");
	return 0;
}
