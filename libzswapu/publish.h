/*
 * publish — the engine's live stats in /dev/shm/zswapu.PID (core/shmstat),
 * for `zswapu stat`, `zswapu ps` and `zswapu stat --record`.
 *
 * A publisher thread (an engine thread, on an arena stack) takes an
 * engine_snapshot() and the pool's tables every PUBLISH_MS and writes them
 * to the segment; the fault and reclaim paths only bump their counters, as
 * before.  The counters are published by name: every stats, engine and
 * reclaim counter, the gauges below, and the writeback fields
 * (written_back_pages, writeback_bytes, wb_reads; zero until a counter of
 * that name exists).
 *
 * zswapu_init() starts it for the process's one engine; zswapu_shutdown()
 * and the preload shim's destructor stop it, which removes the file (the
 * shim leaves its engine running after that, see preload.c).  A segment
 * that cannot be created costs one debug line: stats are not worth a
 * message on stderr.
 *
 * Locks: `lock` (publish.c) guards start and stop; the thread itself takes
 * only what engine_snapshot() and the pool's class tables take.
 */
#ifndef ZSWAPU_PUBLISH_H
#define ZSWAPU_PUBLISH_H

struct engine;
struct zswapu_options;

#define PUBLISH_MS 100

/* publish_start() : publish @e's stats until publish_stop(). */
void publish_start(struct engine *e, const struct zswapu_options *o);

/* publish_stop() : stop the thread and remove the file; idempotent. */
void publish_stop(void);

/*
 * publish_gone() : remove the file now, for a process that ends without its
 * exit handlers (_exit, a fatal signal) and would leave it behind for
 * readers to clean up.  Async-signal-safe: one unlink, no lock.
 */
void publish_gone(void);

#endif
