/**
 * @file metrics.h
 * Counters, gauges and histograms counted per thread and summed only when scraped, and their Prometheus text
 * exposition (format 0.0.4).
 *
 * A registry holds metric families (a name, a help text, a type, label names; histograms also have fixed buckets),
 * and each family holds series (one per combination of label values). Registering a series that exists already (same
 * name and label values) gives the same series back, so that the modules of a new configuration generation count on
 * where the old one left off; weir_metrics_default() is the process-wide registry, never freed.
 *
 * Counting: every thread that counts has its own shard of the registry's cells (a series is one cell, a histogram
 * one cell per bucket plus one for the sum), found through a thread-local pointer. Only the owning thread writes its
 * shard: an increment is a relaxed atomic load and store of one cell (plain `mov`s on x86-64, no `lock` prefix, no
 * cache line shared with another writer), never a lock or a read-modify-write on shared memory. A scrape sums the
 * cell of every shard with relaxed atomic loads. Why that is enough:
 * - every cell is 64 bits, naturally aligned, and read and written only through atomics: no torn or invented values;
 * - a cell has a single writer, so a load returns one of the values that writer stored (read-write coherence), and a
 *   later scrape never sees an older value than an earlier one (read-read coherence): counters summed over shards
 *   never go backwards between two scrapes;
 * - the sum is not a snapshot of one instant (the shards are read one after the other while they move on) and needs
 *   none: each term is exact for some moment during the scrape;
 * - a histogram's count and +Inf bucket are computed from the bucket cells themselves, so they always agree with
 *   the buckets; only `_sum` may be one observation ahead or behind of `_count`, as with every Prometheus client;
 * - a shard grows in chunks of cells, each allocated zeroed by its owner and published with a release store, which the
 *   scraper's acquire load pairs with: a scraper that sees a chunk sees it zeroed or later.
 * When a thread exits, its shard is handed, under the registry's mutex, to the next thread that needs one (the mutex
 * orders the old owner's last stores before the new owner's first load), so thread churn does not grow memory and
 * no count is lost. Registration, the first count of a thread and the first use of a chunk take the registry's
 * mutex or allocate; nothing else does.
 *
 * Values are integers: counters and histogram observations are unsigned, gauges signed (a thread may decrement what
 * another incremented: only the sum means something). Histograms observe integers in a unit of their choice (durations
 * in nanoseconds) and are shown scaled (in seconds). Series whose value lives elsewhere (a store's item count) are
 * read at scrape time through callbacks instead of being counted twice.
 */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <h2o/memory.h>

/** log2 of the cells of a chunk. */
#define WEIR_METRICS_CHUNK_BITS 9
/** Cells per chunk (4 KiB). */
#define WEIR_METRICS_CHUNK_CELLS (1u << WEIR_METRICS_CHUNK_BITS)
/** Chunks per shard: a registry holds at most WEIR_METRICS_MAX_CHUNKS * WEIR_METRICS_CHUNK_CELLS cells. */
#define WEIR_METRICS_MAX_CHUNKS 256
/** Most finite buckets of a histogram. */
#define WEIR_METRICS_MAX_BUCKETS 62
/** Most labels of a family. */
#define WEIR_METRICS_MAX_LABELS 8

typedef struct st_weir_metrics_t weir_metrics_t;
typedef struct st_weir_metrics_family_t weir_metrics_family_t;
typedef struct st_weir_metric_t weir_metric_t;

/** Types of families, as in `# TYPE`. */
typedef enum en_weir_metrics_type_t {
    WEIR_METRICS_COUNTER,   /**< only goes up; its name ends in _total */
    WEIR_METRICS_GAUGE,     /**< goes up and down */
    WEIR_METRICS_HISTOGRAM, /**< observations in fixed buckets, with their sum and count */
} weir_metrics_type_t;

/** The buckets of a histogram. */
typedef struct st_weir_metrics_buckets_t {
    size_t count;           /**< finite upper bounds, 1..WEIR_METRICS_MAX_BUCKETS (+Inf is implicit) */
    const uint64_t *bounds; /**< strictly increasing, in the unit of the observed values */
    double scale;           /**< bounds and the sum are shown multiplied by this (1e-9: nanoseconds shown as seconds) */
} weir_metrics_buckets_t;

/** Durations observed in nanoseconds, shown in seconds: 100 us, 250 us, 500 us, 1 ms ... 10 s, 30 s, 60 s. */
extern const weir_metrics_buckets_t weir_metrics_seconds_buckets;

/** Reads a value at scrape time (called under the registry's mutex, from the scraping thread). */
typedef double (*weir_metrics_read_cb)(void *data);

/** One series. Fields are private; the inline functions below read them. */
struct st_weir_metric_t {
    weir_metrics_t *reg;
    uint64_t serial; /* of the registry */
    uint32_t slot;   /* first cell */
    uint32_t num_bounds;
    const uint64_t *bounds;
};

/** A thread's shard of one registry (private). */
typedef struct st_weir__metrics_shard_t weir__metrics_shard_t;

/** The shard the calling thread used last and its registry's serial number (private). */
typedef struct st_weir__metrics_tls_t {
    uint64_t serial;
    uint64_t **chunks;
} weir__metrics_tls_t;

/** The calling thread's weir__metrics_tls_t (private). */
extern __thread weir__metrics_tls_t weir__metrics_tls;

/** The cell @p slot of the calling thread's shard, made on first use (private). */
uint64_t *weir__metrics_cell_slow(const weir_metric_t *m, uint32_t slot);

/* ---- registries ------------------------------------------------------------------------------------------------ */

/** Creates an empty registry. */
weir_metrics_t *weir_metrics_create(void);

/** Frees @p reg, its series and every shard. No thread may count into it or scrape it any more. */
void weir_metrics_destroy(weir_metrics_t *reg);

/**
 * The process-wide registry (created on first use, never freed), which weir's modules count into and `status.metrics`
 * shows. It survives configuration generations: series are found again by name and labels. It is created with the
 * series that describe the process: `weir_build_info` (the version), `process_start_time_seconds` (when it was
 * created, at startup), `process_open_fds`, `process_max_fds`, `process_resident_memory_bytes`,
 * `process_cpu_seconds_total` and the configuration reload series (see weir_metrics_reload_succeeded).
 */
weir_metrics_t *weir_metrics_default(void);

/* ---- families and series --------------------------------------------------------------------------------------- */

/**
 * The family @p name of @p reg, registered now when new. @p labels are the label names, comma-separated ("path,method";
 * NULL or "" for none; at most WEIR_METRICS_MAX_LABELS); @p buckets is required for histograms and ignored otherwise
 * (the family keeps the pointer: give a static table). Names follow Prometheus's rules ([a-zA-Z_:][a-zA-Z0-9_:]*;
 * label names without ':' and not starting with "__", and no "le" on a histogram).
 * @return the family, or NULL (logged) when the name or a label is invalid, or when @p name exists with another type,
 *         help, labels or buckets.
 */
weir_metrics_family_t *weir_metrics_family(weir_metrics_t *reg, weir_metrics_type_t type, const char *name, const char *help,
                                           const char *labels, const weir_metrics_buckets_t *buckets);

/**
 * The series of @p family with the label values @p values (one per label name, any bytes but NUL), registered now when
 * new. @return the series (it lives as long as the registry); when the registry has no cells left, a series that
 * counts into a sink nobody shows (logged once).
 */
weir_metric_t *weir_metrics_series(weir_metrics_family_t *family, const char *const *values);

/**
 * weir_metrics_family + weir_metrics_series in one call: the label values follow as `const char *` arguments, one per
 * name in @p labels. @return the series; when the family cannot be registered, a sink series (logged).
 */
weir_metric_t *weir_metrics_counter(weir_metrics_t *reg, const char *name, const char *help, const char *labels, ...);
/** As weir_metrics_counter, for a gauge. */
weir_metric_t *weir_metrics_gauge(weir_metrics_t *reg, const char *name, const char *help, const char *labels, ...);
/** As weir_metrics_counter, for a histogram with @p buckets. */
weir_metric_t *weir_metrics_histogram(weir_metrics_t *reg, const char *name, const char *help,
                                      const weir_metrics_buckets_t *buckets, const char *labels, ...);

/**
 * Adds @p fn(@p data) to the value of counter or gauge @p m at every scrape. The same (fn, data) added twice counts
 * once (a reference count), so that a store shared by two configuration generations is not counted twice; different
 * data are summed. @return 0, or -EINVAL for a histogram.
 */
int weir_metrics_add_callback(weir_metric_t *m, weir_metrics_read_cb fn, void *data);

/**
 * Drops one reference to (fn, data) on @p m; with the last one, a counter keeps the callback's last value (read now),
 * so that it does not go backwards when the store it reads goes away. @return 0, or -ENOENT when not added.
 */
int weir_metrics_remove_callback(weir_metric_t *m, weir_metrics_read_cb fn, void *data);

/* ---- counting (any thread; no lock once the thread has its shard and the cell's chunk) ------------------------- */

/**
 * Gives the calling thread its cells of every series of @p reg registered so far, so that counting into them later
 * allocates nothing: worker threads call it when a configuration (and its series) starts on their loop, which keeps
 * allocations off the request path.
 */
void weir_metrics_thread_prepare(weir_metrics_t *reg);

/** The calling thread's cell at @p offset of @p m (private). */
static inline uint64_t *weir__metrics_cell(const weir_metric_t *m, uint32_t offset)
{
    uint32_t slot = m->slot + offset;
    if (__builtin_expect(weir__metrics_tls.serial == m->serial, 1)) {
        uint64_t *chunk = weir__metrics_tls.chunks[slot >> WEIR_METRICS_CHUNK_BITS];
        if (__builtin_expect(chunk != NULL, 1))
            return chunk + (slot & (WEIR_METRICS_CHUNK_CELLS - 1));
    }
    return weir__metrics_cell_slow(m, slot);
}

/** Adds @p n to a cell of the calling thread (private). */
static inline void weir__metrics_cell_add(uint64_t *cell, uint64_t n)
{
    /* the calling thread is the cell's only writer: a load and a store, not a read-modify-write */
    __atomic_store_n(cell, __atomic_load_n(cell, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/** Adds @p n to counter @p m. */
static inline void weir_metric_add(const weir_metric_t *m, uint64_t n)
{
    weir__metrics_cell_add(weir__metrics_cell(m, 0), n);
}

/** Adds 1 to counter @p m. */
static inline void weir_metric_inc(const weir_metric_t *m)
{
    weir_metric_add(m, 1);
}

/** Adds @p delta (may be negative) to gauge @p m. */
static inline void weir_metric_gauge_add(const weir_metric_t *m, int64_t delta)
{
    weir__metrics_cell_add(weir__metrics_cell(m, 0), (uint64_t)delta);
}

/** Records @p value (in the unit of the histogram's bounds) in histogram @p m. */
static inline void weir_metric_observe(const weir_metric_t *m, uint64_t value)
{
    uint32_t i = 0;
    while (i != m->num_bounds && value > m->bounds[i])
        ++i;
    weir__metrics_cell_add(weir__metrics_cell(m, i), 1);
    weir__metrics_cell_add(weir__metrics_cell(m, m->num_bounds + 1), value);
}

/*
 * The hottest paths may keep a thread's cells of a series instead of finding them at every count: weir_metric_cells
 * gives the calling thread's cells (made now if needed), which stay where they are for the life of the thread. They
 * must be used by that thread only (keep them in state of the thread's own, such as an h2o context), and not after it
 * has exited.
 */

/** The calling thread's cells of @p m (one for a counter or gauge; a histogram's buckets, +Inf and sum). */
static inline uint64_t *weir_metric_cells(const weir_metric_t *m)
{
    return weir__metrics_cell(m, 0);
}

/** weir_metric_add on cells from weir_metric_cells. */
static inline void weir_cells_add(uint64_t *cells, uint64_t n)
{
    weir__metrics_cell_add(cells, n);
}

/** weir_metric_gauge_add on cells from weir_metric_cells. */
static inline void weir_cells_gauge_add(uint64_t *cells, int64_t delta)
{
    weir__metrics_cell_add(cells, (uint64_t)delta);
}

/** weir_metric_observe on @p cells, the calling thread's cells of histogram @p m. */
static inline void weir_cells_observe(const weir_metric_t *m, uint64_t *cells, uint64_t value)
{
    uint32_t i = 0;
    while (i != m->num_bounds && value > m->bounds[i])
        ++i;
    weir__metrics_cell_add(cells + i, 1);
    weir__metrics_cell_add(cells + m->num_bounds + 1, value);
}

/* ---- reading --------------------------------------------------------------------------------------------------- */

/**
 * The value of counter or gauge @p m now: the sum over every shard, plus its callbacks. For a histogram, its count.
 * Takes the registry's mutex: for tests and for reading back, not for the request path.
 */
double weir_metrics_value(const weir_metric_t *m);

/** Shards of @p reg: one per thread that counts into it now or did (an exited thread's shard is handed on). For tests. */
size_t weir_metrics_num_shards(weir_metrics_t *reg);

/** The sum of histogram @p m now, scaled as shown (seconds for weir_metrics_seconds_buckets). */
double weir_metrics_histogram_sum(const weir_metric_t *m);

/**
 * Writes every family of @p reg in the Prometheus text format 0.0.4 into @p pool: families sorted by name, each with
 * `# HELP` and `# TYPE`, series in registration order, label values and help texts escaped. @return the text.
 */
h2o_iovec_t weir_metrics_expose(weir_metrics_t *reg, h2o_mem_pool_t *pool);

/* ---- weir's own process-wide series ---------------------------------------------------------------------------- */

/**
 * Counts a successful configuration reload (`weir_config_reloads_total{result="success"}`), sets
 * `weir_config_last_reload_success_timestamp_seconds` to now (it starts at the time the configuration was first
 * loaded, as Prometheus's own) and `weir_config_last_reload_successful` to 1. Any thread.
 */
void weir_metrics_reload_succeeded(void);

/**
 * Counts a failed configuration reload (`weir_config_reloads_total{result="failure"}`; the running configuration kept
 * serving) and sets `weir_config_last_reload_successful` to 0. Any thread.
 */
void weir_metrics_reload_failed(void);

/** The series of one user of a Redis server (a /cache path, an upload gate), in the default registry. */
typedef struct st_weir_metrics_redis_t {
    weir_metric_t *up;         /**< gauge: connections ready for commands */
    weir_metric_t *reconnects; /**< counter: connections made ready again after a failure or a loss */
    weir_metric_t *failures;   /**< counter: connection attempts that failed and ready connections that were lost */
    weir_metric_t *timeouts;   /**< counter: commands that got no reply within their deadline */
    weir_metric_t *errors;     /**< counter: commands that failed otherwise (no connection, lost, error reply) */
} weir_metrics_redis_t;

/** Registers (or finds again) the Redis series of @p use ("cache", "gate") at @p path ("/cache") into @p m. */
void weir_metrics_redis_init(weir_metrics_redis_t *m, const char *use, const char *path);

#endif
