#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "weir/common.h"
#include "weir/control.h"

#define MAX_COMMAND 256

struct st_weir_control_t {
    uv_pipe_t listener;
    char *path;
    weir_control_cb cb;
    void *data;
};

typedef struct st_client_t {
    uv_pipe_t pipe;
    weir_control_t *control;
    uv_write_t wreq;
    char *answer;
    size_t len;
    char buf[MAX_COMMAND + 1];
} client_t;

static void on_client_closed(uv_handle_t *handle)
{
    client_t *client = handle->data;
    free(client->answer);
    free(client);
}

static void on_answer_written(uv_write_t *wreq, int status)
{
    client_t *client = wreq->data;
    uv_close((uv_handle_t *)&client->pipe, on_client_closed);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    client_t *client = handle->data;
    *buf = uv_buf_init(client->buf + client->len, (unsigned)(MAX_COMMAND - client->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    client_t *client = stream->data;
    char *nl;

    if (nread < 0 || (nread == 0 && client->len == MAX_COMMAND)) {
        uv_close((uv_handle_t *)&client->pipe, on_client_closed);
        return;
    }
    client->len += (size_t)nread;
    client->buf[client->len] = '\0';
    if ((nl = memchr(client->buf, '\n', client->len)) == NULL) {
        if (client->len == MAX_COMMAND)
            uv_close((uv_handle_t *)&client->pipe, on_client_closed);
        return;
    }
    *nl = '\0';
    uv_read_stop(stream);
    client->answer = client->control->cb(client->buf, client->control->data);
    uv_buf_t out = uv_buf_init(client->answer, (unsigned)strlen(client->answer));
    client->wreq.data = client;
    if (uv_write(&client->wreq, stream, &out, 1, on_answer_written) != 0)
        uv_close((uv_handle_t *)&client->pipe, on_client_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    weir_control_t *control = listener->data;
    if (status != 0)
        return;
    client_t *client = weir_calloc(1, sizeof(*client));
    client->control = control;
    uv_pipe_init(listener->loop, &client->pipe, 0);
    client->pipe.data = client;
    if (uv_accept(listener, (uv_stream_t *)&client->pipe) != 0 ||
        uv_read_start((uv_stream_t *)&client->pipe, on_alloc, on_read) != 0)
        uv_close((uv_handle_t *)&client->pipe, on_client_closed);
}

/* Whether a process listens on the unix socket at @p path. */
static int socket_in_use(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), in_use;
    if (fd < 0)
        return 0;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    in_use = connect(fd, (void *)&sa, sizeof(sa)) == 0;
    close(fd);
    return in_use;
}

static void on_listener_closed(uv_handle_t *handle)
{
    weir_control_t *control = handle->data;
    free(control->path);
    free(control);
}

int weir_control_start(uv_loop_t *loop, const char *path, weir_control_cb cb, void *data, weir_control_t **out)
{
    struct stat st;
    int ret;

    if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
        weir_error("control socket \"%s\": the path is too long", path);
        return -ENAMETOOLONG;
    }
    /* Its directory is made when missing (as systemd's RuntimeDirectory would), readable by its owner's group. */
    char *dir = weir_strdup(path), *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
            int err = errno;
            weir_error("control socket \"%s\": cannot make its directory: %s", path, strerror(err));
            free(dir);
            return -err;
        }
    }
    free(dir);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            weir_error("control socket \"%s\": a file that is not a socket is in the way", path);
            return -EEXIST;
        }
        if (socket_in_use(path)) {
            weir_error("control socket \"%s\": another process listens on it", path);
            return -EADDRINUSE;
        }
        unlink(path); /* left by a process that is gone */
    }
    weir_control_t *control = weir_calloc(1, sizeof(*control));
    control->path = weir_strdup(path);
    control->cb = cb;
    control->data = data;
    uv_pipe_init(loop, &control->listener, 0);
    control->listener.data = control;
    mode_t old = umask(0177);
    ret = uv_pipe_bind(&control->listener, path);
    umask(old);
    if (ret != 0 || (ret = uv_listen((uv_stream_t *)&control->listener, 16, on_connection)) != 0) {
        weir_error("control socket \"%s\": %s", path, uv_strerror(ret));
        uv_close((uv_handle_t *)&control->listener, on_listener_closed);
        return ret;
    }
    *out = control;
    return 0;
}

void weir_control_stop(weir_control_t *control)
{
    unlink(control->path);
    uv_close((uv_handle_t *)&control->listener, on_listener_closed);
}

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

int weir_control_request(const char *path, const char *command, FILE *out, int timeout_ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timespec start;
    char buf[4096];
    size_t len = 0, cap = sizeof(buf) + 1;
    char *answer = weir_malloc(cap);
    int fd, ret;

    clock_gettime(CLOCK_MONOTONIC, &start);
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(out, "weir: control socket path too long: %s\n", path);
        free(answer);
        return -ENAMETOOLONG;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || connect(fd, (void *)&sa, sizeof(sa)) != 0) {
        ret = -errno;
        fprintf(out, "weir: cannot reach the running server at %s: %s\n", path, strerror(errno));
        goto Exit;
    }
    snprintf(buf, sizeof(buf), "%s\n", command);
    if (write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf)) {
        ret = -errno;
        fprintf(out, "weir: cannot send to %s: %s\n", path, strerror(errno));
        goto Exit;
    }
    for (;;) {
        long left = timeout_ms - elapsed_ms(&start);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            ret = -ETIMEDOUT;
            fprintf(out, "weir: no answer from the running server within %d ms\n", timeout_ms);
            goto Exit;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            fprintf(out, "weir: reading the answer: %s\n", strerror(errno));
            goto Exit;
        }
        if (n == 0)
            break;
        if (len + (size_t)n + 1 > cap) {
            cap = (len + (size_t)n + 1) * 2;
            answer = weir_realloc(answer, cap);
        }
        memcpy(answer + len, buf, (size_t)n);
        len += (size_t)n;
    }
    if (len == 0) {
        ret = -EPROTO;
        fprintf(out, "weir: the running server closed the connection without an answer\n");
        goto Exit;
    }
    answer[len] = '\0';
    fputs(answer, out);
    ret = strncmp(answer, "ok", 2) == 0 ? 0 : 1;
Exit:
    if (fd >= 0)
        close(fd);
    free(answer);
    return ret;
}
