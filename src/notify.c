#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include "weir/notify.h"

void weir_notify(const char *fmt, ...)
{
    char buf[1024];
    va_list args;

    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    sd_notify(0, buf);
}
