/**
 * @file notify.h
 * Tells the service manager what the server is doing (sd_notify: READY=1, RELOADING=1, STOPPING=1, STATUS=...).
 * Outside systemd (no NOTIFY_SOCKET in the environment) this does nothing.
 */
#ifndef WEIR_NOTIFY_H
#define WEIR_NOTIFY_H

/**
 * Sends one notification, printf-style ("READY=1\nSTATUS=serving on ..."). Failures are ignored: the service
 * manager is told what it can be told.
 */
void weir_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
