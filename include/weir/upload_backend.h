/**
 * @file upload_backend.h
 * What POST /upload does with its slot, behind a small vtable (as /cache's backends), so that handlers/upload.c knows
 * only the gate and this interface:
 * - delay (handlers/upload_delay.c): the simulated upload the benchmark measures, a random delay on the worker's
 *   timing wheel, then `{"success": true}`;
 * - s3 (handlers/upload_s3.c): the image of the request stored as an object in an S3-compatible store, one signed PUT
 *   through the worker's HTTP client (src/http_client.c) per slot.
 *
 * An upload's way: prepare (before the gate: reads the request; a bad one is answered here and never waits for a
 * slot) -> the gate grants a slot -> start -> the backend calls the op's callback once with the answer to send ->
 * upload.c gives the slot back and answers. cancel is the one call that stops an op, whatever its state; upload.c calls
 * it from the request pool's destructor. Every call but create/destroy is made on the op's worker thread.
 */
#ifndef WEIR_UPLOAD_BACKEND_H
#define WEIR_UPLOAD_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include <uv.h>

typedef struct st_weir_upload_backend_t weir_upload_backend_t;
typedef struct st_weir_upload_backend_thread_t weir_upload_backend_thread_t;
typedef struct st_weir_upload_op_t weir_upload_op_t;
struct st_weir_upload_s3_settings_t;

/** The answer an upload ends with. */
typedef struct st_weir_upload_result_t {
    /** the HTTP status: 200, or an error status */
    int status;
    /** status 200: the JSON body, on the request's pool (or static) */
    h2o_iovec_t body;
    /** an error status: the message of {"error": MESSAGE} (copied by the answer) */
    const char *error;
    /** true when the connection should close after the answer (its client went away) */
    int close_connection;
} weir_upload_result_t;

/** Called on the op's loop, at most once per op, with the answer; the op is idle afterwards. */
typedef void (*weir_upload_done_cb)(weir_upload_op_t *op, const weir_upload_result_t *result);

/** One upload; embed it in the job that waits (zero it first) and set req and thread before prepare. */
struct st_weir_upload_op_t {
    /** the request; valid until the callback runs or cancel is called */
    h2o_req_t *req;
    /** the backend's state for the request's worker thread */
    weir_upload_backend_thread_t *thread;
    /** private to the backend (state kept on the request's pool) */
    void *data;
};

/** A backend's operations. */
typedef struct st_weir_upload_backend_vtable_t {
    /** "delay", "s3" */
    const char *name;
    /**
     * Creates the state of the worker thread whose loop is @p loop, from inside that thread (on_context_init).
     * @return 0, or a negative errno-style code (logged).
     */
    int (*thread_start)(weir_upload_backend_t *backend, uv_loop_t *loop, weir_upload_backend_thread_t **thread);
    /**
     * Stops what thread_start started, from inside the same thread. Ops still under way (requests abandoned at the end
     * of the graceful shutdown) are dropped without their callback. Handles are closed: run the loop afterwards.
     */
    void (*thread_stop)(weir_upload_backend_t *backend, weir_upload_backend_thread_t *thread);
    /**
     * Reads the request of @p op before it waits for a slot; work that needs no slot may start here.
     * @return 0 to go on to the gate; -1 when the request was answered (a 4xx) and nothing is under way.
     */
    int (*prepare)(weir_upload_backend_t *backend, weir_upload_op_t *op);
    /** Starts the upload of a prepared op, which holds a slot now; @p cb will be called (possibly from inside start). */
    void (*start)(weir_upload_backend_t *backend, weir_upload_op_t *op, weir_upload_done_cb cb);
    /** Stops whatever @p op has under way; its callback will not run. Safe in every state, and idempotent. */
    void (*cancel)(weir_upload_backend_t *backend, weir_upload_op_t *op);
    /** Frees the backend; every thread has been stopped and every loop run. */
    void (*destroy)(weir_upload_backend_t *backend);
} weir_upload_backend_vtable_t;

/** The base of every backend. */
struct st_weir_upload_backend_t {
    const weir_upload_backend_vtable_t *vt;
};

/** The base of every backend's per-thread state (which each backend extends). */
struct st_weir_upload_backend_thread_t {
    weir_upload_backend_t *backend;
};

/**
 * Creates the delay backend: each upload takes a uniformly random delay in [@p min_ms, @p max_ms] (min <= max) on its
 * thread's timing wheel, then answers `200 {"success": true}`.
 */
weir_upload_backend_t *weir_upload_delay_create(uint32_t min_ms, uint32_t max_ms);

/**
 * Creates the S3 backend from @p s (copied; see weir_upload_s3_settings_t in upload.h), whose worker threads keep up
 * to @p max_connections connections to the store each. Connects nothing: each worker thread's HTTP client is made by
 * thread_start.
 * @return 0 with *@p out set; -EINVAL (logged) for settings that weir_upload_s3_check refuses.
 */
int weir_upload_s3_create(const struct st_weir_upload_s3_settings_t *s, unsigned max_connections, weir_upload_backend_t **out);

/**
 * The file extension weir gives the object key of an image of Content-Type @p content_type (the media type, compared
 * without case, parameters ignored): ".jpg" for image/jpeg, ".png", ".gif", ".webp" and a few more; "" for any other.
 */
const char *weir_upload_s3_extension(const char *content_type, size_t len);

/**
 * Finds the error code of an S3 error document (`<Error><Code>NoSuchBucket</Code>...`) in @p len bytes of @p xml and
 * writes it, NUL-terminated, into @p out (@p size bytes, at least 2).
 * @return 0; -ENOENT when there is no Code element, or when it is empty, not made of letters, digits and '.', or longer
 *         than fits.
 */
int weir_upload_s3_error_code(const char *xml, size_t len, char *out, size_t size);

#endif
