/*
 * The executable's own definitions of a few libh2o functions. libh2o 2.2.5 calls them through its PLT, so its calls
 * bind to these (as src/uv_write_fix.c does for libuv's uv_write), which tell src/conn.c what h2o is doing with a
 * connection and then call libh2o's own definitions:
 * - h2o_socket_read_start: lets the HTTP/1 framing guard stand in front of h2o's request reader (conn.h);
 * - h2o_http1_accept, h2o_http2_accept, h2o_http2_handle_upgrade: which protocol a connection speaks;
 * - h2o_http2_decode_rst_stream_payload: every RST_STREAM frame a client sends, for the reset budget (conn.h). libh2o
 *   declares it in h2o/http2_internal.h, which cannot be included (it needs khash.h, not installed); the frame and
 *   payload are only passed on here, so their types stay incomplete. A frame that exceeds the budget fails to decode
 *   with ENHANCE_YOUR_CALM, a connection error: h2o stops reading, sends GOAWAY with that code and closes.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <h2o.h>
#include <h2o/http1.h>
#include <h2o/http2.h>
#include "weir/common.h"
#include "weir/conn.h"

typedef void (*read_start_fn)(h2o_socket_t *, h2o_socket_cb);
typedef void (*accept_fn)(h2o_accept_ctx_t *, h2o_socket_t *, struct timeval);
typedef int (*upgrade_fn)(h2o_req_t *, struct timeval);
struct st_h2o_http2_rst_stream_payload_t;
struct st_h2o_http2_frame_t;
typedef int (*decode_rst_fn)(struct st_h2o_http2_rst_stream_payload_t *, const struct st_h2o_http2_frame_t *, const char **);
int h2o_http2_decode_rst_stream_payload(struct st_h2o_http2_rst_stream_payload_t *payload, const struct st_h2o_http2_frame_t *frame,
                                        const char **err_desc);

static read_start_fn next_read_start;
static accept_fn next_http1_accept, next_http2_accept;
static upgrade_fn next_http2_handle_upgrade;
static decode_rst_fn next_decode_rst_stream_payload;

/* libh2o's own definition of @p name (the next one after the executable's). */
static void *next_symbol(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (fn == NULL) {
        weir_error("cannot find libh2o's %s: %s", name, dlerror());
        abort();
    }
    return fn;
}

/* Resolved once, before main and before any thread. */
__attribute__((constructor)) static void resolve(void)
{
    next_read_start = (read_start_fn)next_symbol("h2o_socket_read_start");
    next_http1_accept = (accept_fn)next_symbol("h2o_http1_accept");
    next_http2_accept = (accept_fn)next_symbol("h2o_http2_accept");
    next_http2_handle_upgrade = (upgrade_fn)next_symbol("h2o_http2_handle_upgrade");
    next_decode_rst_stream_payload = (decode_rst_fn)next_symbol("h2o_http2_decode_rst_stream_payload");
}

void h2o_socket_read_start(h2o_socket_t *sock, h2o_socket_cb cb)
{
    next_read_start(sock, weir__conn_read_start(sock, cb));
}

void h2o_http1_accept(h2o_accept_ctx_t *ctx, h2o_socket_t *sock, struct timeval connected_at)
{
    weir__conn_http1_accept(sock);
    next_http1_accept(ctx, sock, connected_at);
}

void h2o_http2_accept(h2o_accept_ctx_t *ctx, h2o_socket_t *sock, struct timeval connected_at)
{
    weir__conn_http2_accept(sock);
    next_http2_accept(ctx, sock, connected_at);
    weir__conn_http2_accept_end();
}

int h2o_http2_handle_upgrade(h2o_req_t *req, struct timeval connected_at)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock != NULL)
        weir__conn_http2_accept(sock);
    int ret = next_http2_handle_upgrade(req, connected_at);
    weir__conn_http2_accept_end();
    return ret;
}

int h2o_http2_decode_rst_stream_payload(struct st_h2o_http2_rst_stream_payload_t *payload, const struct st_h2o_http2_frame_t *frame,
                                        const char **err_desc)
{
    int ret = next_decode_rst_stream_payload(payload, frame, err_desc);
    if (ret == 0 && weir__conn_http2_reset_received() != 0) {
        *err_desc = "too many streams reset";
        return H2O_HTTP2_ERROR_ENHANCE_YOUR_CALM;
    }
    return ret;
}
