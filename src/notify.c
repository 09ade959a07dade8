/*
 * sd_notify through libsystemd, loaded (dlopen) the first time there is something to tell a service manager, that is
 * when NOTIFY_SOCKET is set: a weir run by hand, in a container or by a benchmark does not map libsystemd and the
 * compression and crypto libraries it pulls in (about 1 MiB of resident memory, measured on Debian 12).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include "weir/common.h"
#include "weir/notify.h"

/* The library of Debian's and Ubuntu's libsystemd0. */
#define LIBSYSTEMD_SONAME "libsystemd.so.0"

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static __typeof__(sd_notify) *notify_fn;

static void load(void)
{
    void *h;
    union { /* the object pointer dlsym returns, as the function pointer it is (as POSIX allows) */
        void *sym;
        __typeof__(sd_notify) *fn;
    } u;

    if (getenv("NOTIFY_SOCKET") == NULL)
        return;
    if ((h = dlopen(LIBSYSTEMD_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        weir_error("cannot load %s to notify the service manager: %s", LIBSYSTEMD_SONAME, dlerror());
        return;
    }
    if ((u.sym = dlsym(h, "sd_notify")) == NULL) {
        weir_error("%s has no sd_notify", LIBSYSTEMD_SONAME);
        dlclose(h);
        return;
    }
    notify_fn = u.fn;
}

void weir_notify(const char *fmt, ...)
{
    char buf[1024];
    va_list args;

    pthread_once(&load_once, load);
    if (notify_fn == NULL)
        return;
    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    notify_fn(0, buf);
}
