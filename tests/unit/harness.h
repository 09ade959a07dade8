/**
 * @file harness.h
 * An in-process request harness for handler tests (tests/unit/harness.c): a private uv loop, a globalconf with one host,
 * an h2o context on that loop and a loopback connection that has no socket. A test registers its module on a path
 * through the module's own register function, starts the harness, and then makes requests that the real handlers
 * process (h2o_process_request), watches their answers (status, headers, body, whether finished), runs the loop, and
 * disposes of a request at any moment (h2o_dispose_request), which is what h2o does when a client goes away.
 *
 * - The connection's get_socket returns NULL: weir's HTTP/1 peer check and connection records stay out.
 * - Answers are captured by the request's last output stream. Like a socket write, it keeps the buffers it is given by
 *   reference, not by copy: weir_test_req_body reads them when called, so a body whose memory went away before the
 *   request was disposed is caught (garbage, or a use-after-free under ASan).
 * - A disposed request's memory is kept until weir_harness_destroy: an answer sent to it afterwards (a handler that
 *   held on to a request it was told is gone) is counted, and weir_harness_destroy fails the test when there was one.
 * - Allocations that weir's own code makes with malloc, calloc or realloc on the test's thread are tracked (the test
 *   executables are linked with --wrap for those and free): weir_harness_destroy fails the test when one made since
 *   weir_harness_create is still live after everything was disposed, in every build, not only under LeakSanitizer.
 * - weir_harness_destroy disposes of the requests still there, the context and the globalconf, runs the loop until
 *   nothing is left and asserts uv_loop_close() == 0.
 *
 * Every call is made on the test's thread. Cmocka assertions fail the test from inside these helpers.
 */
#ifndef WEIR_TESTS_HARNESS_H
#define WEIR_TESTS_HARNESS_H

#include <stddef.h>
#include <h2o.h>

typedef struct st_weir_harness_t weir_harness_t;
typedef struct st_weir_test_req_t weir_test_req_t;

/** A request of the harness. Fields are read-only for tests. */
struct st_weir_test_req_t {
    h2o_req_t req;           /**< the request itself (req.res holds the status and headers once the answer started) */
    weir_harness_t *h;       /**< private */
    h2o_linklist_t link;     /**< private */
    h2o_ostream_t ostr;      /**< private: the last output stream */
    h2o_iovec_vector_t bufs; /**< private: the buffers sent, by reference (in req.pool) */
    char *body;              /**< private: the body as last read by weir_test_req_body */
    int started;             /**< the answer has started (the first send) */
    int finished;            /**< the final send has been made (H2O_SEND_STATE_FINAL or ERROR) */
    int disposed;            /**< weir_test_req_dispose was called */
};

/** The harness. Fields are read-only for tests. */
struct st_weir_harness_t {
    uv_loop_t loop;               /**< the private loop */
    h2o_globalconf_t globalconf;  /**< the configuration the module is registered in */
    h2o_hostconf_t *hostconf;     /**< its one host, "default" */
    h2o_context_t ctx;            /**< valid after weir_harness_start */
    h2o_conn_t conn;              /**< the loopback connection */
    uv_timer_t *tick;             /**< private: bounds each blocking loop run */
    h2o_linklist_t reqs;          /**< private */
    size_t answers_after_dispose; /**< sends made to a request after it was disposed */
    uv_handle_t *h2o_handles[8];  /**< private: handles of h2o's own context that keep the loop alive */
    size_t num_h2o_handles;       /**< private */
    int started;                  /**< weir_harness_start was called */
    int untracked;                /**< private: made by weir_harness_warm_up */
};

/** Makes a harness: its loop, a globalconf with host "default"; starts tracking weir's allocations on this thread. */
weir_harness_t *weir_harness_create(void);

/**
 * Makes the process-wide state that outlives handlers by design before a test's harness tracks allocations: the
 * metrics registry's series (kept for the process's life, so that a reload counts on where the old configuration
 * stopped) are made the first time a handler registers them. Runs @p register_paths (which registers the test's paths
 * and modules, as the test itself will) on a harness whose allocations are not tracked, starts it and destroys it.
 */
void weir_harness_warm_up(void (*register_paths)(weir_harness_t *h, void *arg), void *arg);

/**
 * Registers @p path on the host; register the module under test on the pathconf returned. Register every path before
 * weir_harness_start (the pointer is valid until the next path is registered: h2o keeps the paths in a vector).
 */
h2o_pathconf_t *weir_harness_register_path(weir_harness_t *h, const char *path);

/** Creates the context on the loop (the handlers' on_context_init run) and the loopback connection. */
void weir_harness_start(weir_harness_t *h);

/**
 * Makes a request (HTTP/1.1 unless @p version says otherwise: 0x101, 0x200...) of @p method for @p path (with its
 * query) and @p body (NULL for none; copied), and processes it: the handler runs before this returns.
 */
weir_test_req_t *weir_test_req_send(weir_harness_t *h, const char *method, const char *path, const char *body, int version);

/** As h2o disposes of a request whose client went away (or whose answer was written): the pool's destructors run. */
void weir_test_req_dispose(weir_test_req_t *r);

/** The answer's status, 0 while not started. */
int weir_test_req_status(const weir_test_req_t *r);

/** The value of the first answer header @p name (lower case), NUL-terminated, or NULL when absent. */
const char *weir_test_req_header(weir_test_req_t *r, const char *name);

/** The body sent so far, read now from the buffers the handler gave (NUL-terminated; valid until the next call). */
const char *weir_test_req_body(weir_test_req_t *r);

/** Runs the loop without waiting, @p n times. */
void weir_harness_run_nowait(weir_harness_t *h, unsigned n);

/**
 * Runs the loop (UV_RUN_ONCE, each run bounded to a few milliseconds) until @p cond(@p arg) holds, at most
 * @p max_runs times. @return 1 when it held, 0 when the bound was reached.
 */
int weir_harness_run_until(weir_harness_t *h, int (*cond)(void *arg), void *arg, unsigned max_runs);

/**
 * Fails the test unless @p expected handles of the loop are active and referenced (they keep it alive: timers armed,
 * work outstanding), the harness's own excluded; the message names their types.
 */
void weir_harness_assert_busy_handles(weir_harness_t *h, size_t expected);

/** Allocations made by weir's code on this thread since weir_harness_create. */
size_t weir_harness_allocations(void);

/** Of those, the ones not freed yet. */
size_t weir_harness_live_allocations(void);

/** Fails the test (naming the caller's line) unless weir_harness_live_allocations() is @p expected. */
#define weir_harness_assert_live_allocations(expected) weir_harness__assert_live_allocations((expected), __FILE__, __LINE__)
void weir_harness__assert_live_allocations(size_t expected, const char *file, int line);

/** Disposes of everything (see the file comment), asserts that nothing was left behind, and frees the harness. */
void weir_harness_destroy(weir_harness_t *h);

#endif
