/**
 * @file workpool.h
 * Threads for CPU-bound work (/calc), at a lower scheduling priority than the worker loops, that hand finished work
 * back to the loop that submitted it without ever making that loop wait.
 *
 * Why not libuv's thread pool: libuv tells a loop that work is done with uv_async_send, whose sending thread holds a
 * short critical section while the receiving loop, once woken, spins (997 pauses, then sched_yield, and again) until
 * the sender has left it. When the pool threads run at a lower priority on the loop's core, the woken loop preempts the
 * sender inside that section and spins: about a fifth of the loop thread's time under /calc load (perf), time taken
 * from every other request of that loop. Here a pool thread appends the finished work to its loop's inbox under a
 * mutex, unlocks, and only then writes to the inbox's eventfd: the loop never waits for a pool thread.
 */
#ifndef WEIR_WORKPOOL_H
#define WEIR_WORKPOOL_H

#include <stddef.h>
#include <uv.h>
#include <h2o/linklist.h>

typedef struct st_weir_workpool_t weir_workpool_t;
typedef struct st_weir_workpool_inbox_t weir_workpool_inbox_t;
typedef struct st_weir_work_t weir_work_t;

/** A unit of work; embed it in the job. Fields are private. */
struct st_weir_work_t {
    h2o_linklist_t link;
    weir_workpool_inbox_t *inbox;
    void (*run)(weir_work_t *work);  /* on a pool thread */
    void (*done)(weir_work_t *work); /* on the submitting loop, after run */
    int queued;                      /* in the pool's queue, not yet taken by a thread (under the pool's mutex) */
};

/**
 * Creates a pool of @p num_threads (>= 1) threads, started on first use, each at nice value @p nice (0 leaves the
 * priority alone). @return the pool, or NULL when num_threads is 0.
 */
weir_workpool_t *weir_workpool_create(unsigned num_threads, int nice);

/** Stops and joins the threads, then frees the pool. Every inbox must have been destroyed (and its loop run). */
void weir_workpool_destroy(weir_workpool_t *pool);

/**
 * Creates the inbox through which @p pool returns work submitted on @p loop; call on the loop's thread.
 * @return the inbox, or NULL when no eventfd can be created (logged).
 */
weir_workpool_inbox_t *weir_workpool_inbox_create(weir_workpool_t *pool, uv_loop_t *loop);

/**
 * Closes the inbox once all its work has come back: if some is still queued or running, its done callbacks still run
 * on the loop first, so run the loop until it has no handles left. Its memory is freed with the pool. No work may be
 * submitted through it any more.
 */
void weir_workpool_inbox_destroy(weir_workpool_inbox_t *inbox);

/**
 * Queues @p work (not queued or running already): @p run is called on a pool thread (work is taken in submission
 * order), then @p done on the inbox's loop. While work is outstanding the inbox keeps its loop alive.
 * @return 0, or a negative errno when no pool thread can be started (logged; nothing was queued).
 */
int weir_workpool_submit(weir_workpool_inbox_t *inbox, weir_work_t *work, void (*run)(weir_work_t *), void (*done)(weir_work_t *));

/**
 * Takes @p work back if no thread has started it. Call on the inbox's loop.
 * @return 1 when it was removed (neither callback will run), 0 when it is running or finished (done will run, or ran).
 */
int weir_workpool_cancel(weir_work_t *work);

/** Work submitted through @p inbox whose done callback has not run yet. */
size_t weir_workpool_inbox_outstanding(const weir_workpool_inbox_t *inbox);

#endif
