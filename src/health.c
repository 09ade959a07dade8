/*
 * The readiness registry (health.h): a list of checks under one mutex. Evaluated only by /readyz, so a list is enough.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "weir/common.h"
#include "weir/health.h"

struct st_weir_health_check_t {
    struct st_weir_health_check_t *next;
    char *name;
    weir_health_cb cb;
    void *data;
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static weir_health_check_t *checks; /* oldest first */
static weir_health_check_t **checks_end = &checks;

weir_health_check_t *weir_health_add(const char *name, weir_health_cb cb, void *data)
{
    weir_health_check_t *check = weir_calloc(1, sizeof(*check));
    check->name = weir_strdup(name);
    check->cb = cb;
    check->data = data;

    /* appended, so that the names come out in the order they were first added */
    pthread_mutex_lock(&mutex);
    *checks_end = check;
    checks_end = &check->next;
    pthread_mutex_unlock(&mutex);
    return check;
}

void weir_health_remove(weir_health_check_t *check)
{
    if (check == NULL)
        return;
    pthread_mutex_lock(&mutex);
    for (weir_health_check_t **p = &checks; *p != NULL; p = &(*p)->next) {
        if (*p == check) {
            *p = check->next;
            if (checks_end == &check->next)
                checks_end = p;
            break;
        }
    }
    pthread_mutex_unlock(&mutex);
    free(check->name);
    free(check);
}

size_t weir_health_evaluate(weir_health_status_t **out, int *all_up)
{
    weir_health_status_t *st = NULL;
    size_t n = 0;

    *all_up = 1;
    pthread_mutex_lock(&mutex);
    for (weir_health_check_t *c = checks; c != NULL; c = c->next) {
        size_t i = 0;
        while (i != n && strcmp(st[i].name, c->name) != 0)
            ++i;
        if (i == n) {
            st = weir_realloc(st, sizeof(st[0]) * (n + 1));
            st[n++] = (weir_health_status_t){weir_strdup(c->name), 0, 0};
        }
        ++st[i].total;
        if (c->cb(c->data))
            ++st[i].up;
    }
    pthread_mutex_unlock(&mutex);
    for (size_t i = 0; i != n; ++i)
        if (st[i].up != st[i].total)
            *all_up = 0;
    *out = st;
    return n;
}

void weir_health_free(weir_health_status_t *statuses, size_t count)
{
    for (size_t i = 0; i != count; ++i)
        free(statuses[i].name);
    free(statuses);
}
