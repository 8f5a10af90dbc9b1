/*
 * zswapu.h — the public API of libzswapu: compressed memory for one process.
 *
 * A program (or the LD_PRELOAD shim) starts the engine with zswapu_init(),
 * hands it ranges of private anonymous memory with zswapu_register(), and
 * from then on cold pages of those ranges are compressed into a pool and
 * come back, decompressed, the moment the program touches them.  Nothing
 * else changes for the program: every byte reads as last written.
 *
 * Errors are negative errno values; no function here sets errno.  Every
 * function is thread-safe.  Ranges are page-aligned.
 *
 * Requirements: Linux with userfaultfd (UFFDIO_MOVE, 6.8+) and access to
 * /dev/userfaultfd or CAP_SYS_PTRACE; without them zswapu_init() fails and
 * the program simply runs unmanaged.
 */
#ifndef ZSWAPU_H
#define ZSWAPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ZSWAPU_API __attribute__((visibility("default")))
#else
#define ZSWAPU_API
#endif

/* ======================================================================
 * Basic API
 * ====================================================================== */

/*
 * struct zswapu_options : what zswapu_options_init() fills in, field by
 * field.  Set `size` (done by zswapu_options_init) so that a program built
 * against an older header keeps working with a newer library.
 */
struct zswapu_options {
	size_t size;                  /* sizeof(struct zswapu_options) */
	const char *compressor;       /* "lz4" (default), "lz4:8", "zstd", "zstd:3", "zstd:-1" */
	const char *pool;             /* "zsmalloc" (default), "z3fold", "zbud" */
	size_t limit_bytes;           /* keep resident anonymous memory under this (see
					 "The limit" below); 0 = no limit */
	int limit_includes_pool;      /* 1 (default): the pool counts against the limit */
	unsigned int cold_age_ms;     /* compress pages untouched this long; 0 = only under a limit */
	unsigned int max_compressed;  /* keep a page only if it compresses to <= this; 0 = 3584 */
	int store_incompressible;     /* 1: store poorly compressing pages as-is (zsmalloc) */
	unsigned int spin_us;         /* in a burst of faults the handler polls this long
					 before sleeping; 50, 0 = sleep at once */
	int log_level;                /* 0 silent, 1 errors (default), 2 warn, 3 info, 4 debug */
	/* The pool cap and the writeback tier. */
	size_t max_pool_bytes;        /* cap on the compressed pool; 0 = see max_pool_percent */
	unsigned int max_pool_percent;/* cap as a percentage of limit_bytes (when
					 max_pool_bytes is 0); 0 = no cap, or 20 when
					 a writeback_dir is given */
	unsigned int accept_percent;  /* after the cap, write back (or refuse) until the
					 pool is under this % of it; 0 = 90 */
	const char *writeback_dir;    /* directory for the writeback file (O_TMPFILE,
					 never left behind); NULL = no writeback: at
					 the cap, pages stay resident */
	int detach;                   /* ZSWAPU_DETACH_AUTO (default), _MOVE or _WP, below */
	unsigned int fault_threads;   /* threads that resolve faults, one per CPU the
					 program may run on, each kept on its CPU: a
					 fault is resolved on the CPU it came from.
					 0 (default) = one per CPU, 4 at most; 1 = one
					 handler thread, on any CPU; N = N at most */
	unsigned int stall_max_percent; /* with a limit: raise it while the program's
					 threads wait on what it costs more than this
					 percent of the time ("The stall control"
					 below); 0 (default) = the limit holds */
};

/*
 * The limit.  limit_bytes caps the program's resident anonymous memory,
 * plus the compressed pool unless limit_includes_pool is 0.  The engine's
 * own working memory (index, buffers, stacks, free pages kept for reuse:
 * 2-4 MiB, its caches scaled down under small limits) is not counted: a
 * few-MiB limit would otherwise be all engine.  A reclaimer thread
 * compresses cold pages from just under the limit; a fault that would add
 * a page while the process is over it waits (about a millisecond, 20 ms at
 * most) until the reclaimer has made room, as the kernel reclaims before it
 * charges a page to a cgroup.  When the pool alone fills the limit (no
 * writeback file), nothing is left to take, or taking all that is left
 * would not get under (memory the engine does not manage is over the
 * limit: limit_unreachable in the stats), the process runs over its limit
 * rather than wait for nothing.
 *
 * The stall control.  A limit the program's working set does not fit is
 * held all the same, and the program then waits on refaults most of the
 * time (40-120x slower in the runs docs/design.md lists; the kernel's
 * zswap in a cgroup kills such a program).  With stall_max_percent P, the
 * limit gives: while the program is at it and its threads, summed, wait
 * more than P % of the time on faults that bring back pages that had been
 * compressed, their time held at the limit included (limit_stall_ns), the
 * limit is raised by a quarter every 0.25 s (measured over that long);
 * after 10 s in a row under P/2 %, a raised limit comes down by a fifth, at
 * most to the one set (a lowering undone at once doubles that wait, up to
 * 5 minutes).  The first touch of new memory does not count, so a
 * program that only grows stays held.  zswapu_limit() and limit_bytes in
 * the stats give the limit now; limit_set_bytes the one set.
 */

/*
 * How pages leave the program.  MOVE (UFFDIO_MOVE, Linux 6.8+) takes a
 * batch out in one ioctl.  WP (write-protect, copy, zap; Linux 5.7+) is
 * the fallback for older kernels and costs more per page.  AUTO: MOVE
 * where the kernel has it, else WP.  zswapu_init() fails with -EOPNOTSUPP
 * when the mode asked for is not available.
 */
#define ZSWAPU_DETACH_AUTO 0
#define ZSWAPU_DETACH_MOVE 1
#define ZSWAPU_DETACH_WP 2

/*
 * zswapu_options_init() : fill @o with the defaults listed above.
 */
ZSWAPU_API void zswapu_options_init(struct zswapu_options *o);

/*
 * zswapu_init() : start the engine (one per process) with @o, or the
 * defaults when @o is NULL.  Starts a fault handler thread and, when a
 * limit or a cold age is set, a reclaimer thread.  It also publishes the
 * engine's counters in /dev/shm/zswapu.<pid> (mode 0600, rewritten about
 * every 100 ms by a thread of its own) for `zswapu stat`; failing to create
 * that file is not an error.  A forked child may start one of its own:
 * it has only an inert copy of the parent's, and ranges the parent's engine
 * still serves (until it hands them over: zswapu_before_end()) refuse
 * registration with -EBUSY.
 * @return 0; -EALREADY if it runs already; -EINVAL for a bad option (one
 * line on stderr names it); -EPERM/-EACCES/-ENOSYS when userfaultfd cannot
 * be used here; -EOPNOTSUPP when the kernel lacks a needed feature;
 * -ENOMEM.  On error nothing is left running.
 */
ZSWAPU_API int zswapu_init(const struct zswapu_options *o);

/*
 * zswapu_register() : manage [@addr, @addr + @len): private anonymous,
 * writable memory the caller owns (not mlocked, not shared, not a file).
 * Both must be page-aligned.  Pages already present stay; from now on they
 * may be compressed.  Registering covers whole mappings or splits them
 * (one kernel VMA each): register few large ranges.
 * @return 0; -EINVAL unaligned/empty; -EFAULT the range overlaps zswapu's
 * own memory; -ENOSPC too many ranges; -ECANCELED the engine has stepped
 * aside after a failure; -ENODEV not initialised; kernel errors from
 * UFFDIO_REGISTER.
 */
ZSWAPU_API int zswapu_register(void *addr, size_t len);

/*
 * zswapu_unregister() : bring every compressed page of the range back and
 * stop managing it.  The range must have been registered.
 * @return 0 or as zswapu_register().
 */
ZSWAPU_API int zswapu_unregister(void *addr, size_t len);

/*
 * zswapu_shutdown() : stop reclaiming, put every stored page back,
 * unregister everything, stop the engine's threads and remove the stats
 * file (also removed at exit without this call).  Afterwards the
 * memory is ordinary memory again and zswapu_init() may be called anew.
 */
ZSWAPU_API void zswapu_shutdown(void);

/* ======================================================================
 * Advanced API: hints and statistics
 * ====================================================================== */

/*
 * zswapu_reclaim() : compress the present pages of a registered range now
 * (a hint that it is cold; tests).  Pages that do not compress well enough
 * stay resident.  @return the number of pages stored, or -errno.
 */
ZSWAPU_API long zswapu_reclaim(void *addr, size_t len);

/*
 * zswapu_map_change_begin() / zswapu_map_change_end() : bracket an
 * mremap() that may move pages into (or out of) registered memory, and an
 * mmap(MAP_FIXED) over registered memory together with its
 * zswapu_register().  Needed only in the write-protect detach mode
 * (ZSWAPU_DETACH_WP, kernels without UFFDIO_MOVE), whose detach cannot tell
 * pages moved in meanwhile from the ones it took and would discard them;
 * the bracket waits for a detach in flight (a batch: milliseconds) and
 * holds the next one off.  In MOVE mode, or without an engine, they do
 * nothing.  Pairs may nest across threads, not within one.  The LD_PRELOAD
 * shim brackets its interposed mremap() and mmap() itself.
 */
ZSWAPU_API void zswapu_map_change_begin(void);
ZSWAPU_API void zswapu_map_change_end(void);

/*
 * zswapu_fork_advice() : tell the engine about madvise(@addr, @len,
 * @advice) with MADV_DONTFORK (call it after madvise() returns) or
 * MADV_DOFORK (call it before: a fork in between must not lose the
 * child's pages).  A forked child has no DONTFORK mapping, so the engine
 * must not keep the parent's stored pages for it there: memory the child
 * maps there later by growing a registered mapping in place (mremap)
 * would read them instead of zeros.  Only the registered part of the
 * range is recorded (a range registered later must be told again); unmap
 * and mremap events keep the record current.  The LD_PRELOAD shim calls
 * it from its madvise().  @return 0 (also for an empty range); -EINVAL
 * other advice, or a range zswapu_register() would refuse (-EINVAL,
 * -EFAULT; -ECANCELED once the engine stepped aside); -ENOSPC the
 * engine's table is full (the range is then not known as DONTFORK);
 * -ENODEV when not initialised.
 */
ZSWAPU_API int zswapu_fork_advice(void *addr, size_t len, int advice);

/*
 * zswapu_detach_mode() : how the engine takes pages out of the program:
 * ZSWAPU_DETACH_MOVE or ZSWAPU_DETACH_WP (see above), never AUTO; -ENODEV
 * when not initialised.  WP zaps pages, which a device writing to a
 * pinned page (MADV_DONTFORK memory, often) would not see; MOVE refuses
 * pinned pages.
 */
ZSWAPU_API int zswapu_detach_mode(void);

/*
 * zswapu_before_end() : the process is about to end without its exit
 * handlers: _exit() (daemon(3) forks and ends the parent so), exec, or
 * the default action of a fatal signal.  A child forked without exec
 * reads its compressed pages through this process's engine, and the
 * kernel drops its registration when the engine's descriptor goes: those
 * pages would read as zeros.  So every live forked child gets all of them
 * now and is served no more.  With ZSWAPU_END_CORE, every page of this
 * process comes back too and the engine steps aside: a core dump is
 * written after the engine's threads are gone, and would leave out (zeros)
 * every page still compressed.  Waits at most @timeout_ms (0: as long as
 * it takes).  Async-signal-safe: for a fatal signal's handler (the
 * LD_PRELOAD shim's), its _exit(), daemon() and exec functions.
 * zswapu_shutdown() and a normal exit() under the shim need no call.
 * @return 0; -ETIMEDOUT not done in time; -EINVAL unknown @flags;
 * -ENODEV not initialised (or in a forked child, which has no engine).
 */
#define ZSWAPU_END_CORE 1u
ZSWAPU_API int zswapu_before_end(unsigned int flags, unsigned int timeout_ms);

/*
 * zswapu_managed() : 1 when @addr lies in a registered range, else 0 (the
 * LD_PRELOAD shim asks after a large allocation; tests).  0 without an
 * engine.
 */
ZSWAPU_API int zswapu_managed(const void *addr);

/*
 * zswapu_set_limit() : hold the process under @bytes from now on, as if it
 * had started with that limit_bytes (`zswapu limit PID SIZE` does this in
 * a running program).  A pool cap given as max_pool_percent (or
 * the 20 % a writeback_dir brings) follows the new limit; one given in
 * bytes stays.  Under a lower limit the reclaimer takes pages at its own
 * pace, as when the program grows past its limit; the batch size and the
 * tables sized from the first limit keep their sizes.
 * @return 0; -EINVAL @bytes is 0, or the engine was started without a
 * limit (it runs no reclaimer to hold one); -ECANCELED the engine has
 * stepped aside; -ENODEV when not initialised (also in a forked child,
 * which has no engine of its own yet).
 */
ZSWAPU_API int zswapu_set_limit(size_t bytes);

/* zswapu_limit() : the limit the engine holds now (over the one set while
 * the stall control has raised it); 0 without one or without an engine.
 * zswapu_set_limit() sets both. */
ZSWAPU_API size_t zswapu_limit(void);

/*
 * zswapu_hot() : bring the range's compressed pages back now, before the
 * program touches them (a hint that it is about to be used).
 * @return 0 or -errno.
 */
ZSWAPU_API int zswapu_hot(void *addr, size_t len);

/*
 * struct zswapu_stats : a snapshot; counters named like the kernel's
 * zswap debugfs files.  Counters only grow; gauges are marked.
 */
struct zswapu_stats {
	uint64_t stored_pages;                /* gauge: pages held compressed */
	uint64_t pool_total_size;             /* gauge: bytes of pool memory */
	uint64_t stored_incompressible_pages; /* gauge */
	uint64_t same_filled_pages;           /* gauge */
	uint64_t zero_filled_pages;           /* gauge */
	uint64_t compressed_bytes;            /* gauge: sum of compressed sizes */
	uint64_t reject_compress_poor;
	uint64_t reject_compress_fail;
	uint64_t reject_alloc_fail;
	uint64_t decompress_fail;
	uint64_t stores;
	uint64_t loads;
	uint64_t invalidates;
	uint64_t faults;                      /* missing faults served */
	uint64_t faults_from_store;           /* of which decompressed */
	uint64_t faults_zero;                 /* of which on never-stored pages */
	uint64_t readahead_pages;             /* stored pages brought in with a
						 sequential fault, ahead of it */
	uint64_t reclaim_batches;
	uint64_t reclaimed_pages;             /* pages detached by the reclaimer */
	uint64_t load_p50_ns, load_p99_ns;    /* decompression+lookup latency */
	uint64_t anon_rss_bytes;              /* gauge: resident anonymous memory */
	uint64_t managed_bytes;               /* gauge: bytes of registered ranges */
	uint64_t failed;                      /* 1 when the engine stepped aside */
	uint64_t forks;                       /* forked children served their pages */
	uint64_t child_faults;                /* faults of those children served */
	uint64_t children_exited;             /* of them, gone (exit or exec) */
	/* the pool cap and the writeback tier */
	uint64_t reject_pool_limit;           /* pages left resident: pool at its cap */
	uint64_t pool_limit_hit;              /* times the pool reached its cap */
	uint64_t written_back_pages;          /* pages written to the file */
	uint64_t writeback_bytes;             /* bytes written to the file */
	uint64_t wb_stored_pages;             /* gauge: stored pages held in the file */
	uint64_t wb_reads;                    /* pages read back from the file */
	uint64_t wb_read_p50_ns, wb_read_p99_ns; /* latency of those reads */
	uint64_t wb_errors;                   /* I/O errors (the first stops writeback) */
	uint64_t wb_file_bytes;               /* gauge: file space in use */
	uint64_t wb_live_bytes;               /* gauge: bytes of live objects in it */
	/* back-pressure: faults that would have added a page while the
	 * process was over its limit wait for the reclaimer to make room */
	uint64_t faults_held;                 /* faults held so */
	uint64_t held_us;                     /* their waits, summed */
	uint64_t limit_unreachable;           /* passes of the reclaimer after which
						 usage stayed over the limit by more
						 than all it could take (memory the
						 engine does not manage): faults not
						 held, the reclaimer rests 20 ms-1 s */
	uint64_t stall_ns;                    /* time the program's threads waited
						 on their faults, summed: the
						 handler's time on each (from its
						 read of the fault to the page in
						 place; the kernel's round trip, a
						 few us more, is not in it) and the
						 held time.  Its growth over wall
						 time is the share of the time the
						 program spends waiting on zswapu
						 (over 1 with several threads
						 waiting at once) */
	uint64_t limit_stall_ns;              /* of stall_ns, the waits of faults
						 that brought back a page the
						 reclaimer had taken, held time
						 included: what the limit costs the
						 program; first touches of new
						 memory, held or not, are not in it */
	uint64_t limit_bytes;                 /* gauge: the limit now (0: none) */
	uint64_t limit_set_bytes;             /* gauge: the limit set (at start or by
						 zswapu_set_limit()) */
	uint64_t limit_raised, limit_lowered; /* steps of the stall control */
};

/*
 * zswapu_stats() : fill @st.  Every fault that has returned to its thread
 * before the call is counted (the call waits a moment for the fault
 * handler to finish its current work).  @return 0; -ENODEV when not
 * initialised.
 */
ZSWAPU_API int zswapu_stats(struct zswapu_stats *st);

#ifdef __cplusplus
}
#endif

#endif
