/*
 * The in-process request harness (see harness.h). The loopback connection is weir's own: a conn whose callbacks know
 * no socket, a request initialised with h2o_init_request on it, whose last output stream is the harness's, processed
 * with h2o_process_request and disposed of with h2o_dispose_request.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "unit.h"
#include "harness.h"
#include "weir/metrics.h"
#include "weir/common.h"

/* ---- allocation tracking ------------------------------------------------------------------------------------------
 * The executables that use the harness are linked with --wrap=malloc,calloc,realloc,free: every call that weir's code
 * (and the tests') makes to these comes here; libh2o, libuv and the C library call their own. The __wrap_ and __real_
 * names are the linker's, hence the reserved double underscore. Allocations are tracked on the harness's thread only;
 * frees are looked up from any thread. The table lives in static memory: tracking allocates nothing. The harness's own
 * memory is not weir's: it calls the __real_ functions. */

#define MAX_TRACKED 16384

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *ptr, size_t size);
void __real_free(void *ptr);

static pthread_mutex_t track_mutex = PTHREAD_MUTEX_INITIALIZER;
static void *tracked[MAX_TRACKED];
static size_t num_tracked, num_allocations, num_untracked; /* untracked: the table was full */
static __thread int tracking;

/* Adds @p p to the table; @p is_new counts it as an allocation of the harness's thread. */
static void track(void *p, int is_new)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&track_mutex);
    if (is_new)
        ++num_allocations;
    if (num_tracked < MAX_TRACKED)
        tracked[num_tracked++] = p;
    else
        ++num_untracked;
    pthread_mutex_unlock(&track_mutex);
}

/* Removes @p p from the table; @return whether it was there. */
static int untrack(void *p)
{
    int found = 0;
    if (p == NULL)
        return 0;
    pthread_mutex_lock(&track_mutex);
    for (size_t i = num_tracked; i != 0; --i) {
        if (tracked[i - 1] == p) {
            tracked[i - 1] = tracked[--num_tracked];
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&track_mutex);
    return found;
}

void *__wrap_malloc(size_t size)
{
    void *p = __real_malloc(size);
    if (tracking)
        track(p, 1);
    return p;
}

void *__wrap_calloc(size_t count, size_t size)
{
    void *p = __real_calloc(count, size);
    if (tracking)
        track(p, 1);
    return p;
}

void *__wrap_realloc(void *ptr, size_t size)
{
    void *p = __real_realloc(ptr, size);
    /* The old block is gone when the call succeeded, or when it freed it (size 0). */
    int moved = ptr != NULL && (p != NULL || size == 0) && untrack(ptr);
    if (moved || tracking)
        track(p, !moved);
    return p;
}

void __wrap_free(void *ptr)
{
    untrack(ptr);
    __real_free(ptr);
}

size_t weir_harness_allocations(void)
{
    pthread_mutex_lock(&track_mutex);
    size_t n = num_allocations;
    pthread_mutex_unlock(&track_mutex);
    return n;
}

size_t weir_harness_live_allocations(void)
{
    pthread_mutex_lock(&track_mutex);
    size_t n = num_tracked + num_untracked;
    pthread_mutex_unlock(&track_mutex);
    return n;
}

void weir_harness__assert_live_allocations(size_t expected, const char *file, int line)
{
    size_t live = weir_harness_live_allocations();
    if (live != expected)
        fail_msg("%s:%d: %zu of weir's allocations are live, %zu expected", file, line, live, expected);
}

static void start_tracking(void)
{
    pthread_mutex_lock(&track_mutex);
    num_tracked = num_allocations = num_untracked = 0;
    pthread_mutex_unlock(&track_mutex);
    tracking = 1;
}

/* ---- the loopback connection ----------------------------------------------------------------------------------- */

static socklen_t get_no_address(h2o_conn_t *conn, struct sockaddr *sa)
{
    return 0;
}

static h2o_socket_t *get_no_socket(h2o_conn_t *conn)
{
    return NULL;
}

static const h2o_conn_callbacks_t LOOPBACK_CALLBACKS = {
    .get_sockname = get_no_address,
    .get_peername = get_no_address,
    .get_socket = get_no_socket,
};

/* The request's last output stream: keeps what it is given, by reference, as a socket write would until the request is
 * disposed of. */
static void on_send(h2o_ostream_t *ostr, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    weir_test_req_t *r = H2O_STRUCT_FROM_MEMBER(weir_test_req_t, ostr, ostr);

    if (r->disposed) {
        ++r->h->answers_after_dispose;
        return;
    }
    r->started = 1;
    h2o_vector_reserve(&req->pool, &r->bufs, r->bufs.size + bufcnt);
    for (size_t i = 0; i != bufcnt; ++i)
        r->bufs.entries[r->bufs.size++] = bufs[i];
    if (h2o_send_state_is_in_progress(state))
        h2o_proceed_response(req); /* written at once */
    else
        r->finished = 1;
}

typedef struct st_walk_t {
    weir_harness_t *h;
    size_t busy;
    char names[256];
} walk_t;

static int is_h2os(weir_harness_t *h, uv_handle_t *handle)
{
    for (size_t i = 0; i != h->num_h2o_handles; ++i)
        if (h->h2o_handles[i] == handle)
            return 1;
    return 0;
}

static void on_walk(uv_handle_t *handle, void *_w)
{
    walk_t *w = _w;
    if (handle == (uv_handle_t *)w->h->tick || is_h2os(w->h, handle) || uv_is_closing(handle) || !uv_is_active(handle) ||
        !uv_has_ref(handle))
        return;
    ++w->busy;
    size_t len = strlen(w->names);
    snprintf(w->names + len, sizeof(w->names) - len, " %s", uv_handle_type_name(handle->type));
}

static void on_walk_remember(uv_handle_t *handle, void *_h)
{
    weir_harness_t *h = _h;
    if (handle != (uv_handle_t *)h->tick && !uv_is_closing(handle) && uv_is_active(handle) && uv_has_ref(handle)) {
        assert_true(h->num_h2o_handles < WEIR_ARRAY_SIZE(h->h2o_handles));
        h->h2o_handles[h->num_h2o_handles++] = handle;
    }
}

/* h2o's own context keeps its loop alive (its message queue's async handle is referenced). The handles a context of a
 * globalconf without handlers holds busy are counted first; the real context must hold no more (the handlers' thread
 * states keep nothing busy while idle), and those are left out of the counts from then on. */
static void init_context(weir_harness_t *h)
{
    h2o_globalconf_t bare;
    h2o_context_t bare_ctx;
    walk_t w = {h, 0, ""};

    h2o_config_init(&bare);
    h2o_config_register_host(&bare, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_context_init(&bare_ctx, &h->loop, &bare);
    uv_walk(&h->loop, on_walk, &w);
    h2o_context_dispose(&bare_ctx);
    h2o_config_dispose(&bare);
    uv_run(&h->loop, UV_RUN_NOWAIT); /* the bare context's handles close */

    h2o_context_init(&h->ctx, &h->loop, &h->globalconf);
    uv_walk(&h->loop, on_walk_remember, h);
    if (h->num_h2o_handles != w.busy)
        fail_msg("the handlers' contexts keep the loop alive: %zu busy handle(s), a context without handlers has %zu",
                 h->num_h2o_handles, w.busy);
}

weir_harness_t *weir_harness_create(void)
{
    weir_harness_t *h = __real_calloc(1, sizeof(*h));
    assert_non_null(h);
    start_tracking();
    assert_int_equal(uv_loop_init(&h->loop), 0);
    h2o_config_init(&h->globalconf);
    h->hostconf = h2o_config_register_host(&h->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_linklist_init_anchor(&h->reqs);
    h->tick = __real_malloc(sizeof(*h->tick));
    assert_int_equal(uv_timer_init(&h->loop, h->tick), 0);
    return h;
}

void weir_harness_warm_up(void (*register_paths)(weir_harness_t *h, void *arg), void *arg)
{
    weir_harness_t *h = weir_harness_create();
    tracking = 0;
    h->untracked = 1;
    register_paths(h, arg);
    weir_harness_start(h);
    weir_metrics_thread_prepare(weir_metrics_default()); /* this thread's cells, as a worker thread makes them */
    weir_harness_destroy(h);
}

h2o_pathconf_t *weir_harness_register_path(weir_harness_t *h, const char *path)
{
    assert_false(h->started);
    return h2o_config_register_path(h->hostconf, path, 0);
}

void weir_harness_start(weir_harness_t *h)
{
    assert_false(h->started);
    init_context(h);
    h->conn.ctx = &h->ctx;
    h->conn.hosts = h->globalconf.hosts;
    gettimeofday(&h->conn.connected_at, NULL);
    h->conn.id = 1;
    h->conn.callbacks = &LOOPBACK_CALLBACKS;
    h->started = 1;
}

weir_test_req_t *weir_test_req_send(weir_harness_t *h, const char *method, const char *path, const char *body, int version)
{
    assert_true(h->started);
    weir_test_req_t *r = __real_calloc(1, sizeof(*r));
    assert_non_null(r);
    r->h = h;
    h2o_init_request(&r->req, &h->conn, NULL);
    r->ostr.do_send = on_send;
    r->req._ostr_top = &r->ostr;
    r->req.input.scheme = &H2O_URL_SCHEME_HTTP;
    r->req.input.method = h2o_strdup(&r->req.pool, method, SIZE_MAX);
    r->req.input.path = h2o_strdup(&r->req.pool, path, SIZE_MAX);
    r->req.version = version != 0 ? version : 0x101;
    r->req.http1_is_persistent = r->req.version == 0x101;
    if (body != NULL) {
        r->req.entity = h2o_strdup(&r->req.pool, body, SIZE_MAX);
    }
    h2o_linklist_insert(&h->reqs, &r->link);
    h2o_process_request(&r->req);
    return r;
}

void weir_test_req_dispose(weir_test_req_t *r)
{
    assert_false(r->disposed);
    r->disposed = 1;
    r->bufs = (h2o_iovec_vector_t){NULL};
    h2o_dispose_request(&r->req);
}

int weir_test_req_status(const weir_test_req_t *r)
{
    return r->started ? r->req.res.status : 0;
}

const char *weir_test_req_header(weir_test_req_t *r, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&r->req.res.headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = r->req.res.headers.entries[i].value;
    return h2o_strdup(&r->req.pool, v.base, v.len).base;
}

const char *weir_test_req_body(weir_test_req_t *r)
{
    size_t len = 0;

    assert_false(r->disposed);
    for (size_t i = 0; i != r->bufs.size; ++i)
        len += r->bufs.entries[i].len;
    __real_free(r->body);
    r->body = __real_malloc(len + 1);
    assert_non_null(r->body);
    len = 0;
    for (size_t i = 0; i != r->bufs.size; ++i) {
        memcpy(r->body + len, r->bufs.entries[i].base, r->bufs.entries[i].len);
        len += r->bufs.entries[i].len;
    }
    r->body[len] = '\0';
    return r->body;
}

void weir_harness_run_nowait(weir_harness_t *h, unsigned n)
{
    for (unsigned i = 0; i != n; ++i)
        uv_run(&h->loop, UV_RUN_NOWAIT);
}

static void on_tick(uv_timer_t *timer)
{
}

/* One run of the loop that waits for events for at most a few milliseconds. The tick repeats: were it due at once (the
 * loop's clock is that of its last run), a one-shot tick would fire before the loop waits, and leave the wait
 * unbounded. */
static void run_once_bounded(weir_harness_t *h)
{
    uv_timer_start(h->tick, on_tick, 5, 5);
    uv_run(&h->loop, UV_RUN_ONCE);
    uv_timer_stop(h->tick);
}

int weir_harness_run_until(weir_harness_t *h, int (*cond)(void *arg), void *arg, unsigned max_runs)
{
    for (unsigned i = 0; i != max_runs; ++i) {
        if (cond(arg))
            return 1;
        run_once_bounded(h);
    }
    return cond(arg) ? 1 : 0;
}

void weir_harness_assert_busy_handles(weir_harness_t *h, size_t expected)
{
    walk_t w = {h, 0, ""};
    uv_walk(&h->loop, on_walk, &w);
    if (w.busy != expected)
        fail_msg("%zu handle(s) keep the loop alive (%zu expected):%s", w.busy, expected, w.names);
}

static void free_req(weir_test_req_t *r)
{
    h2o_linklist_unlink(&r->link);
    h2o_mem_clear_pool(&r->req.pool); /* what an answer sent after the dispose put there */
    __real_free(r->body);
    __real_free(r);
}

void weir_harness_destroy(weir_harness_t *h)
{
    /* The connection closes: its requests still there go as a client's would. */
    for (h2o_linklist_t *l = h->reqs.next; l != &h->reqs; l = l->next) {
        weir_test_req_t *r = H2O_STRUCT_FROM_MEMBER(weir_test_req_t, link, l);
        if (!r->disposed)
            weir_test_req_dispose(r);
    }
    if (h->started)
        h2o_context_dispose(&h->ctx);
    /* The handlers' thread state closes its handles; work still running comes back first. */
    unsigned runs = 0;
    while (uv_loop_alive(&h->loop) && runs++ < 2000)
        run_once_bounded(h);
    walk_t w = {h, 0, ""};
    uv_walk(&h->loop, on_walk, &w);
    if (uv_loop_alive(&h->loop))
        fail_msg("the loop is still alive after the context was disposed:%s", w.names);
    h2o_config_dispose(&h->globalconf);
    uv_close((uv_handle_t *)h->tick, (uv_close_cb)__real_free);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h->loop), 0);

    size_t late = h->answers_after_dispose;
    while (!h2o_linklist_is_empty(&h->reqs))
        free_req(H2O_STRUCT_FROM_MEMBER(weir_test_req_t, link, h->reqs.next));
    tracking = 0;
    size_t live = h->untracked ? 0 : weir_harness_live_allocations();
    __real_free(h);
    if (late != 0)
        fail_msg("%zu answer(s) sent to requests after they were disposed of", late);
    if (live != 0)
        fail_msg("%zu allocation(s) made by weir during the test are still live after everything was disposed of", live);
}
