/*
 * libuv 1.42 and later mark a stream unwritable after a read error (such as ECONNRESET); a later uv_write then fails
 * at once with UV_EPIPE and never calls its callback. libh2o 2.2.5 ignores uv_write's return value, so the socket
 * waits forever for that callback: a TLS connection reset by its peer leaks its socket and fd (the close_notify
 * write is the one that fails). The executable therefore provides uv_write itself -- libh2o's calls bind to this
 * definition -- and, when the write fails at once, delivers the callback with the error on the next loop iteration,
 * as libuv does for writes that fail later. libuv 1.34 (Ubuntu 20.04) never fails that way; this changes nothing there.
 * The same override also tells a connection's record (src/conn.c) when its writes complete.
 */
#include <stdlib.h>
#include <uv.h>
#include "weir/common.h"
#include "weir/conn.h"

typedef struct st_failed_write_t {
    uv_check_t check;
    uv_write_t *req;
    uv_write_cb cb;
    int status;
} failed_write_t;

static void on_failed_write_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void on_check(uv_check_t *check)
{
    failed_write_t *fw = check->data;
    uv_check_stop(check);
    uv_close((uv_handle_t *)check, on_failed_write_closed);
    fw->cb(fw->req, fw->status);
}

int uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs, uv_write_cb cb)
{
    /* the connection's record watches its writes (conn.h: the write timeout) */
    cb = weir__conn_write_start(handle, cb);
    int ret = uv_write2(req, handle, bufs, nbufs, NULL, cb);
    if (ret == 0 || cb == NULL)
        return ret;
    failed_write_t *fw = weir_malloc(sizeof(*fw));
    fw->req = req;
    fw->cb = cb;
    fw->status = ret;
    req->handle = handle;
    uv_check_init(handle->loop, &fw->check);
    fw->check.data = fw;
    uv_check_start(&fw->check, on_check);
    return 0;
}
