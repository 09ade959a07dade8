/*
 * The work pool (see workpool.h).
 *
 * Pool: a mutex, a condition variable and one FIFO of submitted work; threads are created by the first submits. Each
 * loop has an inbox: a mutex-protected list of finished work and an eventfd watched by a uv_poll_t. A pool thread that
 * finishes work appends it to the inbox, unlocks, then writes the eventfd. Writing after unlocking matters: the write
 * wakes the loop, which (at a higher priority) preempts the pool thread at once; had the thread still held the mutex,
 * the loop would block on it and two more context switches would follow for every piece of work. So a pool thread may
 * still write to an inbox's eventfd after the loop has taken its work: a destroyed inbox only closes its poll handle,
 * and its memory and eventfd are kept on the pool's list of retired inboxes until the pool's threads are joined.
 *
 * `outstanding` (loop thread only) counts work submitted through the inbox and not yet delivered or cancelled; the
 * poll handle is referenced only while it is non-zero, so that an idle inbox does not keep its loop alive.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <h2o/memory.h>
#include "weir/common.h"
#include "weir/workpool.h"

struct st_weir_workpool_t {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    h2o_linklist_t queue;
    int stopping;
    int nice;
    unsigned num_threads;
    unsigned num_started;
    pthread_t *threads;
    h2o_linklist_t retired; /* destroyed inboxes, freed by weir_workpool_destroy */
};

struct st_weir_workpool_inbox_t {
    uv_poll_t poll;
    h2o_linklist_t retired_link; /* in the pool's retired list once closed */
    int fd;
    weir_workpool_t *pool;
    pthread_mutex_t mutex;
    h2o_linklist_t finished; /* under mutex */
    size_t outstanding;      /* loop thread only */
    int closing;             /* loop thread only */
};

weir_workpool_t *weir_workpool_create(unsigned num_threads, int nice)
{
    if (num_threads == 0)
        return NULL;
    weir_workpool_t *pool = weir_calloc(1, sizeof(*pool));
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->cond, NULL);
    h2o_linklist_init_anchor(&pool->queue);
    h2o_linklist_init_anchor(&pool->retired);
    pool->nice = nice;
    pool->num_threads = num_threads;
    pool->threads = weir_calloc(num_threads, sizeof(pool->threads[0]));
    return pool;
}

static void deliver(weir_work_t *work)
{
    weir_workpool_inbox_t *inbox = work->inbox;
    uint64_t one = 1;

    pthread_mutex_lock(&inbox->mutex);
    h2o_linklist_insert(&inbox->finished, &work->link);
    pthread_mutex_unlock(&inbox->mutex);
    /* An eventfd write only fails when the counter would overflow (it is drained long before). */
    while (write(inbox->fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void *thread_main(void *_pool)
{
    weir_workpool_t *pool = _pool;

    if (pool->nice != 0)
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), pool->nice);
    pthread_mutex_lock(&pool->mutex);
    for (;;) {
        while (h2o_linklist_is_empty(&pool->queue) && !pool->stopping)
            pthread_cond_wait(&pool->cond, &pool->mutex);
        if (h2o_linklist_is_empty(&pool->queue))
            break; /* stopping */
        weir_work_t *work = H2O_STRUCT_FROM_MEMBER(weir_work_t, link, pool->queue.next);
        h2o_linklist_unlink(&work->link);
        work->queued = 0;
        pthread_mutex_unlock(&pool->mutex);
        work->run(work);
        deliver(work);
        pthread_mutex_lock(&pool->mutex);
    }
    pthread_mutex_unlock(&pool->mutex);
    return NULL;
}

void weir_workpool_destroy(weir_workpool_t *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->mutex);
    assert(h2o_linklist_is_empty(&pool->queue));
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->mutex);
    for (unsigned i = 0; i != pool->num_started; ++i)
        pthread_join(pool->threads[i], NULL);
    while (!h2o_linklist_is_empty(&pool->retired)) {
        weir_workpool_inbox_t *inbox = H2O_STRUCT_FROM_MEMBER(weir_workpool_inbox_t, retired_link, pool->retired.next);
        h2o_linklist_unlink(&inbox->retired_link);
        close(inbox->fd);
        pthread_mutex_destroy(&inbox->mutex);
        free(inbox);
    }
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}

static void on_closed(uv_handle_t *handle)
{
    weir_workpool_inbox_t *inbox = handle->data;
    weir_workpool_t *pool = inbox->pool;

    pthread_mutex_lock(&pool->mutex);
    h2o_linklist_insert(&pool->retired, &inbox->retired_link);
    pthread_mutex_unlock(&pool->mutex);
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
    weir_workpool_inbox_t *inbox = poll->data;
    uint64_t count;
    h2o_linklist_t finished;

    /* Read the counter first: work delivered after this read writes it again and wakes the loop once more. */
    while (read(inbox->fd, &count, sizeof(count)) < 0 && errno == EINTR)
        ;
    h2o_linklist_init_anchor(&finished);
    pthread_mutex_lock(&inbox->mutex);
    h2o_linklist_insert_list(&finished, &inbox->finished);
    pthread_mutex_unlock(&inbox->mutex);

    while (!h2o_linklist_is_empty(&finished)) {
        weir_work_t *work = H2O_STRUCT_FROM_MEMBER(weir_work_t, link, finished.next);
        h2o_linklist_unlink(&work->link);
        if (--inbox->outstanding == 0)
            uv_unref((uv_handle_t *)&inbox->poll);
        work->done(work);
    }
    if (inbox->closing && inbox->outstanding == 0)
        uv_close((uv_handle_t *)&inbox->poll, on_closed);
}

weir_workpool_inbox_t *weir_workpool_inbox_create(weir_workpool_t *pool, uv_loop_t *loop)
{
    weir_workpool_inbox_t *inbox = weir_calloc(1, sizeof(*inbox));
    inbox->pool = pool;
    pthread_mutex_init(&inbox->mutex, NULL);
    h2o_linklist_init_anchor(&inbox->finished);
    if ((inbox->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        weir_error("work pool: eventfd: %s", strerror(errno));
        free(inbox);
        return NULL;
    }
    uv_poll_init(loop, &inbox->poll, inbox->fd);
    inbox->poll.data = inbox;
    uv_poll_start(&inbox->poll, UV_READABLE, on_readable);
    uv_unref((uv_handle_t *)&inbox->poll);
    return inbox;
}

void weir_workpool_inbox_destroy(weir_workpool_inbox_t *inbox)
{
    inbox->closing = 1;
    if (inbox->outstanding == 0)
        uv_close((uv_handle_t *)&inbox->poll, on_closed);
}

size_t weir_workpool_inbox_outstanding(const weir_workpool_inbox_t *inbox)
{
    return inbox->outstanding;
}

int weir_workpool_submit(weir_workpool_inbox_t *inbox, weir_work_t *work, void (*run)(weir_work_t *), void (*done)(weir_work_t *))
{
    weir_workpool_t *pool = inbox->pool;

    assert(!inbox->closing);
    pthread_mutex_lock(&pool->mutex);
    /* Threads start with the first submits, one per submit until all have started. */
    if (pool->num_started < pool->num_threads) {
        int ret = pthread_create(&pool->threads[pool->num_started], NULL, thread_main, pool);
        if (ret == 0) {
            ++pool->num_started;
        } else if (pool->num_started == 0) {
            pthread_mutex_unlock(&pool->mutex);
            weir_error("work pool: cannot start a thread: %s", strerror(ret));
            return -ret;
        }
    }
    work->inbox = inbox;
    work->run = run;
    work->done = done;
    work->queued = 1;
    h2o_linklist_insert(&pool->queue, &work->link);
    pthread_mutex_unlock(&pool->mutex);
    /* Signalled after unlocking: a thread woken while the mutex is still held would only block on it again. */
    pthread_cond_signal(&pool->cond);

    if (inbox->outstanding++ == 0)
        uv_ref((uv_handle_t *)&inbox->poll);
    return 0;
}

int weir_workpool_cancel(weir_work_t *work)
{
    weir_workpool_t *pool = work->inbox->pool;
    int removed = 0;

    pthread_mutex_lock(&pool->mutex);
    if (work->queued) {
        h2o_linklist_unlink(&work->link);
        work->queued = 0;
        removed = 1;
    }
    pthread_mutex_unlock(&pool->mutex);
    if (removed) {
        weir_workpool_inbox_t *inbox = work->inbox;
        if (--inbox->outstanding == 0) {
            uv_unref((uv_handle_t *)&inbox->poll);
            if (inbox->closing)
                uv_close((uv_handle_t *)&inbox->poll, on_closed);
        }
    }
    return removed;
}
