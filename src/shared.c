#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "weir/common.h"
#include "weir/shared.h"

typedef struct st_entry_t {
    struct st_entry_t *next;
    char *key;
    void *obj;
    size_t refs;
    void (*destroy)(void *obj);
} entry_t;

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static entry_t *entries;

void *weir_shared_acquire(const char *key, void *(*create)(void *arg), void *arg, void (*destroy)(void *obj), int *created)
{
    entry_t *e;
    void *obj = NULL;

    pthread_mutex_lock(&mutex);
    for (e = entries; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            ++e->refs;
            obj = e->obj;
            *created = 0;
            goto Exit;
        }
    }
    if ((obj = create(arg)) == NULL)
        goto Exit;
    e = weir_calloc(1, sizeof(*e));
    e->key = weir_strdup(key);
    e->obj = obj;
    e->refs = 1;
    e->destroy = destroy;
    e->next = entries;
    entries = e;
    *created = 1;
Exit:
    pthread_mutex_unlock(&mutex);
    return obj;
}

void weir_shared_release(void *obj)
{
    entry_t **p, *e = NULL;

    pthread_mutex_lock(&mutex);
    for (p = &entries; *p != NULL; p = &(*p)->next) {
        if ((*p)->obj == obj) {
            e = *p;
            if (--e->refs == 0)
                *p = e->next;
            else
                e = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&mutex);
    if (e != NULL) {
        e->destroy(e->obj);
        free(e->key);
        free(e);
    }
}

char *weir_shared_path_key(h2o_pathconf_t *pathconf, const char *what, char *buf, size_t size)
{
    const char *host = "?";
    int hostlen = 1;

    for (h2o_hostconf_t **hc = pathconf->global->hosts; *hc != NULL && host[0] == '?'; ++hc) {
        int found = &(*hc)->fallback_path == pathconf;
        for (size_t i = 0; i != (*hc)->paths.size && !found; ++i)
            found = (*hc)->paths.entries + i == pathconf;
        if (found) {
            host = (*hc)->authority.hostport.base;
            hostlen = (int)(*hc)->authority.hostport.len;
        }
    }
    snprintf(buf, size, "%.*s|%.*s|%s", hostlen, host, (int)pathconf->path.len, pathconf->path.base, what);
    return buf;
}

struct st_weir_per_loop_entry_t {
    struct st_weir_per_loop_entry_t *next;
    uv_loop_t *loop;
    void *value;
    size_t refs;
};

void weir_per_loop_init(weir_per_loop_t *pl)
{
    pthread_mutex_init(&pl->mutex, NULL);
    pl->entries = NULL;
}

void weir_per_loop_dispose(weir_per_loop_t *pl)
{
    assert(pl->entries == NULL);
    pthread_mutex_destroy(&pl->mutex);
}

int weir_per_loop_acquire(weir_per_loop_t *pl, uv_loop_t *loop, int (*start)(void *arg, uv_loop_t *loop, void **value), void *arg,
                          void **value)
{
    struct st_weir_per_loop_entry_t *e;
    int ret = 0;

    /* Only the loop's own thread adds or removes its entry; the mutex guards the list against the other loops. */
    pthread_mutex_lock(&pl->mutex);
    for (e = pl->entries; e != NULL && e->loop != loop; e = e->next)
        ;
    pthread_mutex_unlock(&pl->mutex);
    if (e != NULL) {
        ++e->refs;
        *value = e->value;
        return 0;
    }
    void *v = NULL;
    if ((ret = start(arg, loop, &v)) != 0)
        return ret;
    e = weir_calloc(1, sizeof(*e));
    e->loop = loop;
    e->value = v;
    e->refs = 1;
    pthread_mutex_lock(&pl->mutex);
    e->next = pl->entries;
    pl->entries = e;
    pthread_mutex_unlock(&pl->mutex);
    *value = v;
    return 0;
}

void weir_per_loop_release(weir_per_loop_t *pl, uv_loop_t *loop, void (*stop)(void *arg, void *value), void *arg)
{
    struct st_weir_per_loop_entry_t **p, *e = NULL;

    pthread_mutex_lock(&pl->mutex);
    for (p = &pl->entries; *p != NULL; p = &(*p)->next) {
        if ((*p)->loop == loop) {
            e = *p;
            if (--e->refs == 0)
                *p = e->next;
            else
                e = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&pl->mutex);
    if (e != NULL) {
        stop(arg, e->value);
        free(e);
    }
}
