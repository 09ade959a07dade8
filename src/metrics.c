/*
 * Metric registries: families and series under a mutex, cells in per-thread shards, Prometheus text exposition (see
 * metrics.h for the memory-ordering argument).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "weir/common.h"
#include "weir/metrics.h"
#include "weir/respond.h"

/* The first cells of every registry are a sink for series that could not be given cells of their own. */
#define SINK_CELLS (WEIR_METRICS_MAX_BUCKETS + 2)
#define MAX_CELLS ((uint32_t)WEIR_METRICS_MAX_CHUNKS * WEIR_METRICS_CHUNK_CELLS)

static const uint64_t SINK_BOUNDS[] = {1};

struct st_weir__metrics_shard_t {
    uint64_t *chunks[WEIR_METRICS_MAX_CHUNKS]; /* written by the owner (release), read by scrapes (acquire) */
    int owned;                                 /* a thread counts into it (under the registry's mutex) */
};

typedef struct st_callback_t {
    weir_metrics_read_cb fn;
    void *data;
    size_t refs;
} callback_t;

typedef struct st_series_t {
    weir_metric_t pub; /* first */
    weir_metrics_family_t *family;
    char **values;
    callback_t *callbacks;
    size_t num_callbacks;
    double retired; /* last values of the callbacks of a counter that were removed */
} series_t;

struct st_weir_metrics_family_t {
    weir_metrics_t *reg;
    weir_metrics_type_t type;
    char *name;
    char *help;
    char *labels; /* as given, for comparisons */
    char *label_names[WEIR_METRICS_MAX_LABELS];
    size_t num_labels;
    const weir_metrics_buckets_t *buckets;
    series_t **series;
    size_t num_series;
    series_t *overflow; /* given out when the registry has no cells left */
};

struct st_weir_metrics_t {
    pthread_mutex_t mutex;
    uint64_t serial;
    weir_metrics_t *next; /* in the list of live registries */
    weir_metrics_family_t **families;
    size_t num_families;
    uint32_t next_slot;
    weir__metrics_shard_t **shards;
    size_t num_shards;
    series_t sink;           /* counters and gauges of families that could not be registered */
    series_t sink_histogram; /* histograms of such families */
    int warned_full;
};

__thread weir__metrics_tls_t weir__metrics_tls;

/* ---- registries and shards ------------------------------------------------------------------------------------ */

/* The live registries, for the thread-exit destructor (a registry destroyed meanwhile is not touched). */
static pthread_mutex_t registries_mutex = PTHREAD_MUTEX_INITIALIZER;
static weir_metrics_t *registries;
static uint64_t last_serial;

/* The shards of one thread, one per registry it counted into. Heap memory, the value of a pthread key, so that the key's
 * destructor hands them back when the thread exits. */
typedef struct st_thread_shards_t {
    size_t size;
    struct {
        uint64_t serial;
        weir_metrics_t *reg;
        weir__metrics_shard_t *shard;
    } entries[];
} thread_shards_t;

static pthread_key_t shards_key;
static pthread_once_t shards_once = PTHREAD_ONCE_INIT;
static __thread thread_shards_t *my_shards;

static void on_thread_exit(void *_list)
{
    thread_shards_t *list = _list;

    pthread_mutex_lock(&registries_mutex);
    for (size_t i = 0; i != list->size; ++i) {
        for (weir_metrics_t *reg = registries; reg != NULL; reg = reg->next) {
            if (reg->serial != list->entries[i].serial)
                continue;
            pthread_mutex_lock(&reg->mutex);
            list->entries[i].shard->owned = 0;
            pthread_mutex_unlock(&reg->mutex);
            break;
        }
    }
    pthread_mutex_unlock(&registries_mutex);
    free(list);
    my_shards = NULL;
    weir__metrics_tls.serial = 0;
    weir__metrics_tls.chunks = NULL;
}

static void create_shards_key(void)
{
    pthread_key_create(&shards_key, on_thread_exit);
}

/* A free shard of @p reg, or a new one; called with reg->mutex held. */
static weir__metrics_shard_t *take_shard(weir_metrics_t *reg)
{
    for (size_t i = 0; i != reg->num_shards; ++i) {
        if (!reg->shards[i]->owned) {
            reg->shards[i]->owned = 1;
            return reg->shards[i];
        }
    }
    weir__metrics_shard_t *shard = weir_calloc(1, sizeof(*shard));
    shard->owned = 1;
    reg->shards = weir_realloc(reg->shards, sizeof(reg->shards[0]) * (reg->num_shards + 1));
    reg->shards[reg->num_shards++] = shard;
    return shard;
}

static weir__metrics_shard_t *my_shard(weir_metrics_t *reg)
{
    if (my_shards != NULL) {
        for (size_t i = 0; i != my_shards->size; ++i)
            if (my_shards->entries[i].serial == reg->serial)
                return my_shards->entries[i].shard;
    }
    pthread_once(&shards_once, create_shards_key);
    pthread_mutex_lock(&reg->mutex);
    weir__metrics_shard_t *shard = take_shard(reg);
    pthread_mutex_unlock(&reg->mutex);

    size_t size = my_shards != NULL ? my_shards->size : 0;
    my_shards = weir_realloc(my_shards, sizeof(*my_shards) + sizeof(my_shards->entries[0]) * (size + 1));
    my_shards->size = size + 1;
    my_shards->entries[size].serial = reg->serial;
    my_shards->entries[size].reg = reg;
    my_shards->entries[size].shard = shard;
    pthread_setspecific(shards_key, my_shards);
    return shard;
}

uint64_t *weir__metrics_cell_slow(const weir_metric_t *m, uint32_t slot)
{
    weir__metrics_shard_t *shard = my_shard(m->reg);
    weir__metrics_tls.serial = m->serial;
    weir__metrics_tls.chunks = shard->chunks;

    size_t c = slot >> WEIR_METRICS_CHUNK_BITS;
    uint64_t *chunk = shard->chunks[c]; /* only this thread stores it */
    if (chunk == NULL) {
        chunk = weir_calloc(WEIR_METRICS_CHUNK_CELLS, sizeof(uint64_t));
        __atomic_store_n(&shard->chunks[c], chunk, __ATOMIC_RELEASE);
    }
    return chunk + (slot & (WEIR_METRICS_CHUNK_CELLS - 1));
}

void weir_metrics_thread_prepare(weir_metrics_t *reg)
{
    weir__metrics_shard_t *shard = my_shard(reg);

    pthread_mutex_lock(&reg->mutex);
    uint32_t used = reg->next_slot;
    pthread_mutex_unlock(&reg->mutex);
    for (uint32_t c = 0; c <= (used - 1) >> WEIR_METRICS_CHUNK_BITS && c != WEIR_METRICS_MAX_CHUNKS; ++c) {
        if (shard->chunks[c] == NULL)
            __atomic_store_n(&shard->chunks[c], weir_calloc(WEIR_METRICS_CHUNK_CELLS, sizeof(uint64_t)), __ATOMIC_RELEASE);
    }
}

weir_metrics_t *weir_metrics_create(void)
{
    weir_metrics_t *reg = weir_calloc(1, sizeof(*reg));
    pthread_mutex_init(&reg->mutex, NULL);
    reg->next_slot = SINK_CELLS;
    reg->sink.pub.reg = reg;
    reg->sink_histogram.pub.reg = reg;
    reg->sink_histogram.pub.num_bounds = 1;
    reg->sink_histogram.pub.bounds = SINK_BOUNDS;

    pthread_mutex_lock(&registries_mutex);
    reg->serial = ++last_serial;
    reg->next = registries;
    registries = reg;
    pthread_mutex_unlock(&registries_mutex);
    reg->sink.pub.serial = reg->serial;
    reg->sink_histogram.pub.serial = reg->serial;
    return reg;
}

static void free_family(weir_metrics_family_t *f);

static void free_series(series_t *s, size_t num_values)
{
    for (size_t i = 0; i != num_values; ++i)
        free(s->values[i]);
    free(s->values);
    free(s->callbacks);
    free(s);
}

void weir_metrics_destroy(weir_metrics_t *reg)
{
    pthread_mutex_lock(&registries_mutex);
    for (weir_metrics_t **p = &registries; *p != NULL; p = &(*p)->next) {
        if (*p == reg) {
            *p = reg->next;
            break;
        }
    }
    pthread_mutex_unlock(&registries_mutex);
    /* The calling thread's own list may still name this registry's shard: forget it. */
    if (my_shards != NULL) {
        for (size_t i = 0; i != my_shards->size; ++i) {
            if (my_shards->entries[i].serial == reg->serial) {
                my_shards->entries[i] = my_shards->entries[--my_shards->size];
                break;
            }
        }
    }
    if (weir__metrics_tls.serial == reg->serial)
        weir__metrics_tls.serial = 0;

    for (size_t i = 0; i != reg->num_families; ++i) {
        weir_metrics_family_t *f = reg->families[i];
        for (size_t j = 0; j != f->num_series; ++j)
            free_series(f->series[j], f->num_labels);
        free(f->series);
        free(f->overflow);
        free_family(f);
    }
    free(reg->families);
    for (size_t i = 0; i != reg->num_shards; ++i) {
        for (size_t c = 0; c != WEIR_METRICS_MAX_CHUNKS; ++c)
            free(reg->shards[i]->chunks[c]);
        free(reg->shards[i]);
    }
    free(reg->shards);
    pthread_mutex_destroy(&reg->mutex);
    free(reg);
}

/* ---- families and series -------------------------------------------------------------------------------------- */

static int valid_name(const char *s, int colons)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *p = s; *p != '\0'; ++p) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colons && c == ':') ||
                 (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* Splits @p labels into @p f's label names. @return 0, or -1 (logged). */
static int split_labels(weir_metrics_family_t *f, const char *labels)
{
    const char *p = labels != NULL ? labels : "";

    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        if (f->num_labels == WEIR_METRICS_MAX_LABELS) {
            weir_error("metrics: %s has more than %d labels", f->name, WEIR_METRICS_MAX_LABELS);
            return -1;
        }
        char *name = weir_strndup(p, len);
        f->label_names[f->num_labels++] = name;
        if (!valid_name(name, 0) || strncmp(name, "__", 2) == 0 || (f->type == WEIR_METRICS_HISTOGRAM && strcmp(name, "le") == 0)) {
            weir_error("metrics: %s: invalid label name \"%s\"", f->name, name);
            return -1;
        }
        for (size_t i = 0; i + 1 < f->num_labels; ++i) {
            if (strcmp(f->label_names[i], name) == 0) {
                weir_error("metrics: %s: label \"%s\" given twice", f->name, name);
                return -1;
            }
        }
        p += len;
        if (*p == ',')
            ++p;
    }
    return 0;
}

static int valid_buckets(const weir_metrics_buckets_t *b)
{
    if (b == NULL || b->count == 0 || b->count > WEIR_METRICS_MAX_BUCKETS || b->bounds == NULL || !(b->scale > 0))
        return 0;
    for (size_t i = 1; i < b->count; ++i)
        if (b->bounds[i] <= b->bounds[i - 1])
            return 0;
    return 1;
}

static void free_family(weir_metrics_family_t *f)
{
    for (size_t j = 0; j != f->num_labels; ++j)
        free(f->label_names[j]);
    free(f->name);
    free(f->help);
    free(f->labels);
    free(f);
}

static int same_buckets(const weir_metrics_buckets_t *a, const weir_metrics_buckets_t *b)
{
    return a == b ||
           (a->count == b->count && a->scale == b->scale && memcmp(a->bounds, b->bounds, sizeof(a->bounds[0]) * a->count) == 0);
}

weir_metrics_family_t *weir_metrics_family(weir_metrics_t *reg, weir_metrics_type_t type, const char *name, const char *help,
                                           const char *labels, const weir_metrics_buckets_t *buckets)
{
    weir_metrics_family_t *found = NULL;
    const char *label_text = labels != NULL ? labels : "";

    if (!valid_name(name, 1) || strncmp(name, "__", 2) == 0) {
        weir_error("metrics: invalid metric name \"%s\"", name != NULL ? name : "(null)");
        return NULL;
    }
    if (type == WEIR_METRICS_HISTOGRAM && !valid_buckets(buckets)) {
        weir_error("metrics: %s: a histogram needs 1 to %d strictly increasing bucket bounds", name, WEIR_METRICS_MAX_BUCKETS);
        return NULL;
    }
    pthread_mutex_lock(&reg->mutex);
    for (size_t i = 0; i != reg->num_families; ++i) {
        weir_metrics_family_t *f = reg->families[i];
        if (strcmp(f->name, name) != 0)
            continue;
        if (f->type != type || strcmp(f->help, help != NULL ? help : "") != 0 || strcmp(f->labels, label_text) != 0 ||
            (type == WEIR_METRICS_HISTOGRAM && !same_buckets(f->buckets, buckets))) {
            pthread_mutex_unlock(&reg->mutex);
            weir_error("metrics: %s registered again with another type, help, labels or buckets", name);
            return NULL;
        }
        found = f;
        break;
    }
    pthread_mutex_unlock(&reg->mutex);
    if (found != NULL)
        return found;

    weir_metrics_family_t *f = weir_calloc(1, sizeof(*f));
    f->reg = reg;
    f->type = type;
    f->name = weir_strdup(name);
    f->help = weir_strdup(help != NULL ? help : "");
    f->labels = weir_strdup(label_text);
    f->buckets = type == WEIR_METRICS_HISTOGRAM ? buckets : NULL;
    if (split_labels(f, labels) != 0) {
        free_family(f);
        return NULL;
    }
    pthread_mutex_lock(&reg->mutex);
    /* another thread may have registered it meanwhile */
    for (size_t i = 0; i != reg->num_families; ++i) {
        if (strcmp(reg->families[i]->name, name) == 0) {
            pthread_mutex_unlock(&reg->mutex);
            free_family(f);
            return weir_metrics_family(reg, type, name, help, labels, buckets);
        }
    }
    reg->families = weir_realloc(reg->families, sizeof(reg->families[0]) * (reg->num_families + 1));
    reg->families[reg->num_families++] = f;
    pthread_mutex_unlock(&reg->mutex);
    return f;
}

static uint32_t cells_of(const weir_metrics_family_t *f)
{
    /* a histogram: its finite buckets, +Inf, the sum */
    return f->type == WEIR_METRICS_HISTOGRAM ? (uint32_t)f->buckets->count + 2 : 1;
}

weir_metric_t *weir_metrics_series(weir_metrics_family_t *f, const char *const *values)
{
    weir_metrics_t *reg = f->reg;
    series_t *s = NULL;

    pthread_mutex_lock(&reg->mutex);
    for (size_t i = 0; i != f->num_series && s == NULL; ++i) {
        series_t *candidate = f->series[i];
        size_t j = 0;
        while (j != f->num_labels && strcmp(candidate->values[j], values[j]) == 0)
            ++j;
        if (j == f->num_labels)
            s = candidate;
    }
    if (s != NULL)
        goto Exit;

    uint32_t cells = cells_of(f), slot = reg->next_slot;
    /* a series' cells never straddle two chunks */
    if ((slot & (WEIR_METRICS_CHUNK_CELLS - 1)) + cells > WEIR_METRICS_CHUNK_CELLS)
        slot = (slot | (WEIR_METRICS_CHUNK_CELLS - 1)) + 1;
    if (slot + cells > MAX_CELLS) {
        if (!reg->warned_full) {
            reg->warned_full = 1;
            weir_error("metrics: no cells left for %s and later series (%u in use); they are not counted", f->name, reg->next_slot);
        }
        s = f->overflow;
        if (s == NULL) {
            /* the sink's cells, with the family's bounds; not among the family's series, so never shown */
            s = f->overflow = weir_calloc(1, sizeof(*s));
            s->pub = reg->sink.pub;
            s->pub.num_bounds = f->type == WEIR_METRICS_HISTOGRAM ? (uint32_t)f->buckets->count : 0;
            s->pub.bounds = f->type == WEIR_METRICS_HISTOGRAM ? f->buckets->bounds : NULL;
        }
        goto Exit;
    }
    reg->next_slot = slot + cells;
    s = weir_calloc(1, sizeof(*s));
    s->pub.reg = reg;
    s->pub.serial = reg->serial;
    s->pub.slot = slot;
    if (f->type == WEIR_METRICS_HISTOGRAM) {
        s->pub.num_bounds = (uint32_t)f->buckets->count;
        s->pub.bounds = f->buckets->bounds;
    }
    s->family = f;
    s->values = weir_calloc(f->num_labels != 0 ? f->num_labels : 1, sizeof(s->values[0]));
    for (size_t j = 0; j != f->num_labels; ++j)
        s->values[j] = weir_strdup(values[j]);
    f->series = weir_realloc(f->series, sizeof(f->series[0]) * (f->num_series + 1));
    f->series[f->num_series++] = s;
Exit:
    pthread_mutex_unlock(&reg->mutex);
    return &s->pub;
}

static weir_metric_t *series_va(weir_metrics_t *reg, weir_metrics_type_t type, const char *name, const char *help,
                                const weir_metrics_buckets_t *buckets, const char *labels, va_list ap)
{
    weir_metrics_family_t *f = weir_metrics_family(reg, type, name, help, labels, buckets);
    const char *values[WEIR_METRICS_MAX_LABELS];

    if (f == NULL) /* a programming error, logged: count into the sink rather than crash */
        return type == WEIR_METRICS_HISTOGRAM ? &reg->sink_histogram.pub : &reg->sink.pub;
    for (size_t i = 0; i != f->num_labels; ++i)
        values[i] = va_arg(ap, const char *);
    return weir_metrics_series(f, values);
}

weir_metric_t *weir_metrics_counter(weir_metrics_t *reg, const char *name, const char *help, const char *labels, ...)
{
    va_list ap;
    va_start(ap, labels);
    weir_metric_t *m = series_va(reg, WEIR_METRICS_COUNTER, name, help, NULL, labels, ap);
    va_end(ap);
    return m;
}

weir_metric_t *weir_metrics_gauge(weir_metrics_t *reg, const char *name, const char *help, const char *labels, ...)
{
    va_list ap;
    va_start(ap, labels);
    weir_metric_t *m = series_va(reg, WEIR_METRICS_GAUGE, name, help, NULL, labels, ap);
    va_end(ap);
    return m;
}

weir_metric_t *weir_metrics_histogram(weir_metrics_t *reg, const char *name, const char *help,
                                      const weir_metrics_buckets_t *buckets, const char *labels, ...)
{
    va_list ap;
    va_start(ap, labels);
    weir_metric_t *m = series_va(reg, WEIR_METRICS_HISTOGRAM, name, help, buckets, labels, ap);
    va_end(ap);
    return m;
}

/* The series of @p m when it is a real one of its registry (not the sink). */
static series_t *series_of(const weir_metric_t *m)
{
    series_t *s = (series_t *)m;
    return m->slot >= SINK_CELLS && s->family != NULL ? s : NULL;
}

int weir_metrics_add_callback(weir_metric_t *m, weir_metrics_read_cb fn, void *data)
{
    series_t *s = series_of(m);
    int ret = 0;

    if (s == NULL)
        return 0; /* the sink: shown nowhere */
    if (s->family->type == WEIR_METRICS_HISTOGRAM)
        return -EINVAL;
    pthread_mutex_lock(&m->reg->mutex);
    for (size_t i = 0; i != s->num_callbacks; ++i) {
        if (s->callbacks[i].fn == fn && s->callbacks[i].data == data) {
            ++s->callbacks[i].refs;
            goto Exit;
        }
    }
    s->callbacks = weir_realloc(s->callbacks, sizeof(s->callbacks[0]) * (s->num_callbacks + 1));
    s->callbacks[s->num_callbacks++] = (callback_t){fn, data, 1};
Exit:
    pthread_mutex_unlock(&m->reg->mutex);
    return ret;
}

int weir_metrics_remove_callback(weir_metric_t *m, weir_metrics_read_cb fn, void *data)
{
    series_t *s = series_of(m);
    int ret = -ENOENT;

    if (s == NULL)
        return 0;
    pthread_mutex_lock(&m->reg->mutex);
    for (size_t i = 0; i != s->num_callbacks; ++i) {
        callback_t *cb = s->callbacks + i;
        if (cb->fn != fn || cb->data != data)
            continue;
        if (--cb->refs == 0) {
            if (s->family->type == WEIR_METRICS_COUNTER)
                s->retired += fn(data);
            *cb = s->callbacks[--s->num_callbacks];
            if (s->num_callbacks == 0) {
                free(s->callbacks);
                s->callbacks = NULL;
            }
        }
        ret = 0;
        break;
    }
    pthread_mutex_unlock(&m->reg->mutex);
    return ret;
}

/* v in the unit shown: dividing by 1e9 gives 30 for 30000000000 where multiplying by 1e-9 gives 30.000000000000004 */
static double scaled(uint64_t v, double scale)
{
    double inverse = round(1.0 / scale); /* 1.0 / 1e-9 is not exactly 1e9 */
    return inverse >= 1 && fabs(1.0 / scale - inverse) <= inverse * 1e-9 ? (double)v / inverse : (double)v * scale;
}

/* ---- reading -------------------------------------------------------------------------------------------------- */

/* The sum of cell @p slot over every shard; called with the registry's mutex held. */
static uint64_t sum_cell(weir_metrics_t *reg, uint32_t slot)
{
    uint64_t sum = 0;
    size_t c = slot >> WEIR_METRICS_CHUNK_BITS, i = slot & (WEIR_METRICS_CHUNK_CELLS - 1);

    for (size_t k = 0; k != reg->num_shards; ++k) {
        uint64_t *chunk = __atomic_load_n(&reg->shards[k]->chunks[c], __ATOMIC_ACQUIRE);
        if (chunk != NULL)
            sum += __atomic_load_n(&chunk[i], __ATOMIC_RELAXED);
    }
    return sum;
}

static double callbacks_sum(const series_t *s)
{
    double sum = s->retired;
    for (size_t i = 0; i != s->num_callbacks; ++i)
        sum += s->callbacks[i].fn(s->callbacks[i].data);
    return sum;
}

/* The value of a counter or gauge (cells as the type says, plus callbacks), with the mutex held. */
static double scalar_value(weir_metrics_t *reg, const series_t *s, int *is_integer, uint64_t *as_u64, int64_t *as_i64)
{
    uint64_t cells = sum_cell(reg, s->pub.slot);
    double extra = callbacks_sum(s);

    *is_integer = s->num_callbacks == 0 && s->retired == 0;
    *as_u64 = cells;
    *as_i64 = (int64_t)cells;
    if (s->family->type == WEIR_METRICS_GAUGE)
        return (double)(int64_t)cells + extra;
    return (double)cells + extra;
}

double weir_metrics_value(const weir_metric_t *m)
{
    series_t *s = series_of(m);
    weir_metrics_t *reg = m->reg;
    double v = 0;

    if (s == NULL)
        return 0;
    pthread_mutex_lock(&reg->mutex);
    if (s->family->type == WEIR_METRICS_HISTOGRAM) {
        uint64_t count = 0;
        for (uint32_t i = 0; i <= m->num_bounds; ++i)
            count += sum_cell(reg, m->slot + i);
        v = (double)count;
    } else {
        int is_integer;
        uint64_t u;
        int64_t i;
        v = scalar_value(reg, s, &is_integer, &u, &i);
    }
    pthread_mutex_unlock(&reg->mutex);
    return v;
}

size_t weir_metrics_num_shards(weir_metrics_t *reg)
{
    pthread_mutex_lock(&reg->mutex);
    size_t n = reg->num_shards;
    pthread_mutex_unlock(&reg->mutex);
    return n;
}

double weir_metrics_histogram_sum(const weir_metric_t *m)
{
    series_t *s = series_of(m);
    double v = 0;

    if (s == NULL || s->family->type != WEIR_METRICS_HISTOGRAM)
        return 0;
    pthread_mutex_lock(&m->reg->mutex);
    v = scaled(sum_cell(m->reg, m->slot + m->num_bounds + 1), s->family->buckets->scale);
    pthread_mutex_unlock(&m->reg->mutex);
    return v;
}

/* ---- exposition ----------------------------------------------------------------------------------------------- */

typedef struct st_text_t {
    char *buf;
    size_t len, cap;
} text_t;

static void text_reserve(text_t *t, size_t more)
{
    if (t->len + more <= t->cap)
        return;
    size_t cap = t->cap != 0 ? t->cap : 4096;
    while (cap < t->len + more)
        cap *= 2;
    t->buf = weir_realloc(t->buf, cap);
    t->cap = cap;
}

static void text_add(text_t *t, const char *s, size_t len)
{
    text_reserve(t, len);
    memcpy(t->buf + t->len, s, len);
    t->len += len;
}

static void text_str(text_t *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_printf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(text_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    text_reserve(t, 64);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= t->cap - t->len) {
        text_reserve(t, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
    }
    t->len += (size_t)n;
}

/* HELP text: backslash and line feed escaped. Label values: also the double quote. */
static void text_escaped(text_t *t, const char *s, int quote)
{
    for (; *s != '\0'; ++s) {
        switch (*s) {
        case '\\':
            text_add(t, "\\\\", 2);
            break;
        case '\n':
            text_add(t, "\\n", 2);
            break;
        case '"':
            if (quote) {
                text_add(t, "\\\"", 2);
                break;
            }
            /* fallthrough */
        default:
            text_add(t, s, 1);
            break;
        }
    }
}

/* A float as Prometheus reads it: integers without a fraction, others in the shortest form that reads back. */
static void text_double(text_t *t, double v)
{
    char buf[40];

    if (isnan(v)) {
        text_str(t, "NaN");
        return;
    }
    if (isinf(v)) {
        text_str(t, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        text_printf(t, "%.0f", v);
        return;
    }
    for (int precision = 15; precision <= 17; ++precision) {
        snprintf(buf, sizeof(buf), "%.*g", precision, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    text_str(t, buf);
}

/* name{l1="v1",...[,le="B"]} */
static void text_series_name(text_t *t, const weir_metrics_family_t *f, const series_t *s, const char *suffix, const char *le)
{
    text_str(t, f->name);
    text_str(t, suffix);
    if (f->num_labels == 0 && le == NULL)
        return;
    text_add(t, "{", 1);
    for (size_t i = 0; i != f->num_labels; ++i) {
        if (i != 0)
            text_add(t, ",", 1);
        text_str(t, f->label_names[i]);
        text_add(t, "=\"", 2);
        text_escaped(t, s->values[i], 1);
        text_add(t, "\"", 1);
    }
    if (le != NULL) {
        if (f->num_labels != 0)
            text_add(t, ",", 1);
        text_add(t, "le=\"", 4);
        text_str(t, le);
        text_add(t, "\"", 1);
    }
    text_add(t, "}", 1);
}

static void expose_histogram(text_t *t, weir_metrics_t *reg, const weir_metrics_family_t *f, const series_t *s)
{
    const weir_metrics_buckets_t *b = f->buckets;
    uint64_t cumulative = 0;
    char le[40];

    for (size_t i = 0; i <= b->count; ++i) {
        cumulative += sum_cell(reg, s->pub.slot + (uint32_t)i);
        if (i == b->count) {
            snprintf(le, sizeof(le), "+Inf");
        } else {
            text_t tmp = {NULL, 0, 0};
            text_double(&tmp, scaled(b->bounds[i], b->scale));
            snprintf(le, sizeof(le), "%.*s", (int)tmp.len, tmp.buf);
            free(tmp.buf);
        }
        text_series_name(t, f, s, "_bucket", le);
        text_printf(t, " %" PRIu64 "\n", cumulative);
    }
    text_series_name(t, f, s, "_sum", NULL);
    text_add(t, " ", 1);
    text_double(t, scaled(sum_cell(reg, s->pub.slot + (uint32_t)b->count + 1), b->scale));
    text_add(t, "\n", 1);
    text_series_name(t, f, s, "_count", NULL);
    text_printf(t, " %" PRIu64 "\n", cumulative);
}

static int cmp_family_name(const void *a, const void *b)
{
    const weir_metrics_family_t *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

h2o_iovec_t weir_metrics_expose(weir_metrics_t *reg, h2o_mem_pool_t *pool)
{
    static const char *const TYPES[] = {"counter", "gauge", "histogram"};
    text_t t = {NULL, 0, 0};

    pthread_mutex_lock(&reg->mutex);
    weir_metrics_family_t **sorted = weir_malloc(sizeof(sorted[0]) * (reg->num_families + 1));
    memcpy(sorted, reg->families, sizeof(sorted[0]) * reg->num_families);
    qsort(sorted, reg->num_families, sizeof(sorted[0]), cmp_family_name);
    for (size_t i = 0; i != reg->num_families; ++i) {
        const weir_metrics_family_t *f = sorted[i];
        if (f->num_series == 0)
            continue; /* nothing to show yet (a family whose series are made on first use) */
        text_str(&t, "# HELP ");
        text_str(&t, f->name);
        text_add(&t, " ", 1);
        text_escaped(&t, f->help, 0);
        text_printf(&t, "\n# TYPE %s %s\n", f->name, TYPES[f->type]);
        for (size_t j = 0; j != f->num_series; ++j) {
            const series_t *s = f->series[j];
            if (f->type == WEIR_METRICS_HISTOGRAM) {
                expose_histogram(&t, reg, f, s);
                continue;
            }
            int is_integer;
            uint64_t u;
            int64_t v;
            double d = scalar_value(reg, s, &is_integer, &u, &v);
            text_series_name(&t, f, s, "", NULL);
            if (is_integer && f->type == WEIR_METRICS_COUNTER) {
                text_printf(&t, " %" PRIu64 "\n", u);
            } else if (is_integer) {
                text_printf(&t, " %" PRId64 "\n", v);
            } else {
                text_add(&t, " ", 1);
                text_double(&t, d);
                text_add(&t, "\n", 1);
            }
        }
    }
    pthread_mutex_unlock(&reg->mutex);
    free(sorted);

    h2o_iovec_t out;
    out.base = h2o_mem_alloc_pool(pool, t.len + 1);
    memcpy(out.base, t.buf != NULL ? t.buf : "", t.len);
    out.base[t.len] = '\0';
    out.len = t.len;
    free(t.buf);
    return out;
}

/* ---- weir's own series ---------------------------------------------------------------------------------------- */

static const uint64_t SECONDS_BOUNDS[] = {100000,     250000,     500000,     1000000,     2500000,     5000000,
                                          10000000,   25000000,   50000000,   100000000,   250000000,   500000000,
                                          1000000000, 2500000000, 5000000000, 10000000000, 30000000000, 60000000000};
const weir_metrics_buckets_t weir_metrics_seconds_buckets = {WEIR_ARRAY_SIZE(SECONDS_BOUNDS), SECONDS_BOUNDS, 1e-9};

static weir_metrics_t *default_registry;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static double start_time;
static uint64_t last_reload_ok_bits; /* atomic: a double's bits */
static int last_reload_ok = 1;       /* atomic */
static weir_metric_t *reloads_ok, *reloads_failed;

static double wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double read_one(void *data)
{
    return 1;
}

static double read_double_bits(void *data)
{
    uint64_t bits = __atomic_load_n((uint64_t *)data, __ATOMIC_RELAXED);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static double read_int(void *data)
{
    return (double)__atomic_load_n((int *)data, __ATOMIC_RELAXED);
}

static double read_start_time(void *data)
{
    return start_time;
}

static double read_open_fds(void *data)
{
    DIR *dir = opendir("/proc/self/fd");
    double n = 0;
    if (dir == NULL)
        return NAN;
    for (struct dirent *e; (e = readdir(dir)) != NULL;)
        if (e->d_name[0] != '.')
            ++n;
    closedir(dir);
    return n - 1; /* the directory's own descriptor */
}

static double read_max_fds(void *data)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return NAN;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double read_rss(void *data)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size, resident;
    double v = NAN;
    if (f == NULL)
        return v;
    if (fscanf(f, "%llu %llu", &size, &resident) == 2)
        v = (double)resident * (double)sysconf(_SC_PAGESIZE);
    fclose(f);
    return v;
}

static double read_cpu_seconds(void *data)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return NAN;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void set_double_bits(uint64_t *bits, double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    __atomic_store_n(bits, b, __ATOMIC_RELAXED);
}

static double read_response_memory(void *unused)
{
    return (double)weir_respond_memory_in_use();
}

static void create_default(void)
{
    weir_metrics_t *reg = weir_metrics_create();

    start_time = wall_now();
    set_double_bits(&last_reload_ok_bits, start_time);
    weir_metrics_add_callback(
        weir_metrics_gauge(reg, "weir_build_info", "weir's version (the value is always 1)", "version", WEIR_VERSION), read_one,
        NULL);
    weir_metrics_add_callback(
        weir_metrics_gauge(reg, "process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds", NULL),
        read_start_time, NULL);
    weir_metrics_add_callback(weir_metrics_gauge(reg, "process_open_fds", "Open file descriptors", NULL), read_open_fds, NULL);
    weir_metrics_add_callback(weir_metrics_gauge(reg, "process_max_fds", "The limit of open file descriptors", NULL), read_max_fds,
                              NULL);
    weir_metrics_add_callback(weir_metrics_gauge(reg, "process_resident_memory_bytes", "Resident memory size, in bytes", NULL),
                              read_rss, NULL);
    weir_metrics_add_callback(
        weir_metrics_counter(reg, "process_cpu_seconds_total", "User and system CPU time spent, in seconds", NULL),
        read_cpu_seconds, NULL);
    weir_metrics_add_callback(weir_metrics_gauge(reg, "weir_response_memory_bytes",
                                                 "Bytes held by large answers (16 KiB and more) not yet delivered, "
                                                 "against limit-response-memory",
                                                 NULL),
                              read_response_memory, NULL);
    static const char RELOADS_HELP[] = "Configuration reloads (SIGHUP, systemctl reload), by result";
    reloads_ok = weir_metrics_counter(reg, "weir_config_reloads_total", RELOADS_HELP, "result", "success");
    reloads_failed = weir_metrics_counter(reg, "weir_config_reloads_total", RELOADS_HELP, "result", "failure");
    weir_metrics_add_callback(
        weir_metrics_gauge(reg, "weir_config_last_reload_success_timestamp_seconds",
                           "Time of the last successful configuration load or reload, since the Unix epoch, in seconds", NULL),
        read_double_bits, &last_reload_ok_bits);
    weir_metrics_add_callback(weir_metrics_gauge(reg, "weir_config_last_reload_successful",
                                                 "Whether the last configuration reload succeeded (1) or failed (0)", NULL),
                              read_int, &last_reload_ok);
    default_registry = reg;
}

weir_metrics_t *weir_metrics_default(void)
{
    pthread_once(&default_once, create_default);
    return default_registry;
}

void weir_metrics_reload_succeeded(void)
{
    weir_metrics_default();
    weir_metric_inc(reloads_ok);
    set_double_bits(&last_reload_ok_bits, wall_now());
    __atomic_store_n(&last_reload_ok, 1, __ATOMIC_RELAXED);
}

void weir_metrics_reload_failed(void)
{
    weir_metrics_default();
    weir_metric_inc(reloads_failed);
    __atomic_store_n(&last_reload_ok, 0, __ATOMIC_RELAXED);
}

void weir_metrics_redis_init(weir_metrics_redis_t *m, const char *use, const char *path)
{
    weir_metrics_t *reg = weir_metrics_default();
    static const char LABELS[] = "use,path";

    m->up = weir_metrics_gauge(reg, "weir_redis_connections_up", "Connections to Redis ready for commands", LABELS, use, path);
    m->reconnects = weir_metrics_counter(reg, "weir_redis_reconnects_total",
                                         "Connections to Redis made ready again after a failure or a loss", LABELS, use, path);
    m->failures =
        weir_metrics_counter(reg, "weir_redis_connection_failures_total",
                             "Connection attempts to Redis that failed, and ready connections that were lost", LABELS, use, path);
    m->timeouts = weir_metrics_counter(reg, "weir_redis_command_timeouts_total",
                                       "Redis commands that got no reply within their deadline", LABELS, use, path);
    m->errors = weir_metrics_counter(reg, "weir_redis_command_errors_total",
                                     "Redis commands that failed otherwise: no connection, connection lost, error reply", LABELS,
                                     use, path);
}
