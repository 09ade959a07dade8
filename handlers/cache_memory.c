/*
 * The memory backend: a store shared by every worker thread.
 *
 * Keys are hashed with SipHash-1-3 under a random key (clients choose the keys, so the hash must not be predictable).
 * The high bits of the hash pick a shard, the low bits a bucket of that shard's chained table. Each shard has its own
 * mutex, an LRU list (least recently used first), a byte budget (max_bytes / num_shards) and a binary min-heap of the
 * entries that have a TTL, ordered by expiry time. So eviction is exact LRU within a shard and approximately LRU over
 * the whole store, as in other sharded LRU caches, and never needs more than one lock.
 *
 * Expired entries are never returned: get compares the expiry time with the clock on every read. They are reclaimed
 * without scanning: from the top of the heap, a few per operation on the shard, and all that are needed before any
 * live entry is evicted to make room.
 *
 * Allocation, copying and freeing happen outside the lock where possible: set builds the new entry before locking and
 * frees the entries it displaced after unlocking. A value is reference-counted: get_shared takes a reference while the
 * shard is locked (another thread may evict or replace the entry as soon as the lock is released) and the answer that
 * sends the value holds it, so that a thousand slow readers of one value share one copy of it; get and get_pool copy
 * it instead.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "weir/cache.h"
#include "weir/common.h"

/* How many expired entries an operation reclaims in passing (more only when it needs the room). */
#define RECLAIM_PER_OP 8
#define INITIAL_BUCKETS 16
#define CACHE_LINE 64

/* An entry is shared by its shard and by the answers that are sending its value (get_shared): it is freed with the
 * last reference, which may come after the shard has dropped it. */
typedef struct st_entry_t {
    size_t refs;              /* atomic: the shard's (while in the table) and those of answers */
    struct st_entry_t *hnext; /* bucket chain; after removal, the list of entries to release */
    h2o_linklist_t lru;
    uint64_t hash;
    uint64_t expires_at; /* clock value in ns at which the entry is dead; 0 for never */
    size_t heap_index;   /* position in shard->heap when expires_at != 0 */
    size_t key_len;
    size_t value_len;
    char bytes[]; /* key, then value, then a NUL */
} entry_t;

#define ENTRY_OVERHEAD (sizeof(entry_t) + 1)

typedef struct st_shard_t {
    pthread_mutex_t mutex;
    entry_t **buckets;
    size_t num_buckets; /* a power of two */
    size_t count;
    h2o_linklist_t lru; /* anchor: lru.next is the least recently used entry */
    entry_t **heap;
    size_t heap_size;
    size_t heap_capacity;
    uint64_t bytes;
    uint64_t max_bytes;
    uint64_t evictions;
    uint64_t expirations;
} shard_t;

/* Shards are padded to whole cache lines so that two locks never share one. */
#define SHARD_STRIDE (((sizeof(shard_t) + CACHE_LINE - 1) / CACHE_LINE) * CACHE_LINE)

struct st_weir_cache_memory_t {
    unsigned num_shards;
    unsigned shard_bits;
    uint64_t shard_max_bytes;
    uint64_t sip_k0, sip_k1;
    uint64_t (*now_ns)(void *clock_data);
    void *clock_data;
    char *shards; /* num_shards * SHARD_STRIDE bytes, aligned to CACHE_LINE */
};

/* ---- hashing -------------------------------------------------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIP_ROUND()                                                                                                                \
    do {                                                                                                                           \
        v0 += v1;                                                                                                                  \
        v1 = rotl64(v1, 13);                                                                                                       \
        v1 ^= v0;                                                                                                                  \
        v0 = rotl64(v0, 32);                                                                                                       \
        v2 += v3;                                                                                                                  \
        v3 = rotl64(v3, 16);                                                                                                       \
        v3 ^= v2;                                                                                                                  \
        v0 += v3;                                                                                                                  \
        v3 = rotl64(v3, 21);                                                                                                       \
        v3 ^= v0;                                                                                                                  \
        v2 += v1;                                                                                                                  \
        v1 = rotl64(v1, 17);                                                                                                       \
        v1 ^= v2;                                                                                                                  \
        v2 = rotl64(v2, 32);                                                                                                       \
    } while (0)

/* SipHash-1-3: one compression round per word, three finalization rounds. */
static uint64_t siphash13(uint64_t k0, uint64_t k1, const unsigned char *p, size_t len)
{
    uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575), v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
    uint64_t v2 = k0 ^ UINT64_C(0x6c7967656e657261), v3 = k1 ^ UINT64_C(0x7465646279746573);
    size_t whole = len & ~(size_t)7;

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = 0;
        for (int j = 7; j >= 0; --j)
            m = (m << 8) | p[i + j];
        v3 ^= m;
        SIP_ROUND();
        v0 ^= m;
    }
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t j = 0; j < (len & 7); ++j)
        last |= (uint64_t)p[whole + j] << (8 * j);
    v3 ^= last;
    SIP_ROUND();
    v0 ^= last;
    v2 ^= 0xff;
    SIP_ROUND();
    SIP_ROUND();
    SIP_ROUND();
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- small helpers -------------------------------------------------------------------------------------------- */

static uint64_t monotonic_now_ns(void *unused)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline shard_t *shard_at(weir_cache_memory_t *m, unsigned i)
{
    return (shard_t *)(m->shards + (size_t)i * SHARD_STRIDE);
}

static inline shard_t *shard_for(weir_cache_memory_t *m, uint64_t hash)
{
    return shard_at(m, m->shard_bits == 0 ? 0 : (unsigned)(hash >> (64 - m->shard_bits)));
}

static inline size_t entry_cost(const entry_t *e)
{
    return ENTRY_OVERHEAD + e->key_len + e->value_len;
}

static inline int entry_is_expired(const entry_t *e, uint64_t now)
{
    return e->expires_at != 0 && now >= e->expires_at;
}

static void entry_release(entry_t *e)
{
    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(e);
}

static void free_list(entry_t *e)
{
    while (e != NULL) {
        entry_t *next = e->hnext;
        entry_release(e);
        e = next;
    }
}

/* ---- the expiry heap (a binary min-heap on expires_at) ---------------------------------------------------------- */

static void heap_place(shard_t *s, size_t i, entry_t *e)
{
    s->heap[i] = e;
    e->heap_index = i;
}

static void heap_sift_up(shard_t *s, size_t i)
{
    entry_t *e = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent]->expires_at <= e->expires_at)
            break;
        heap_place(s, i, s->heap[parent]);
        i = parent;
    }
    heap_place(s, i, e);
}

static void heap_sift_down(shard_t *s, size_t i)
{
    entry_t *e = s->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->heap_size)
            break;
        if (child + 1 < s->heap_size && s->heap[child + 1]->expires_at < s->heap[child]->expires_at)
            ++child;
        if (e->expires_at <= s->heap[child]->expires_at)
            break;
        heap_place(s, i, s->heap[child]);
        i = child;
    }
    heap_place(s, i, e);
}

static void heap_push(shard_t *s, entry_t *e)
{
    if (s->heap_size == s->heap_capacity) {
        s->heap_capacity = s->heap_capacity == 0 ? 16 : s->heap_capacity * 2;
        s->heap = weir_realloc(s->heap, s->heap_capacity * sizeof(s->heap[0]));
    }
    heap_place(s, s->heap_size++, e);
    heap_sift_up(s, e->heap_index);
}

static void heap_remove(shard_t *s, entry_t *e)
{
    size_t i = e->heap_index;
    entry_t *last = s->heap[--s->heap_size];
    if (last == e)
        return;
    heap_place(s, i, last);
    heap_sift_up(s, i);
    heap_sift_down(s, last->heap_index);
}

/* ---- the hash table ------------------------------------------------------------------------------------------- */

static entry_t **bucket_of(shard_t *s, uint64_t hash)
{
    return &s->buckets[hash & (s->num_buckets - 1)];
}

static entry_t *table_find(shard_t *s, uint64_t hash, const void *key, size_t key_len)
{
    for (entry_t *e = *bucket_of(s, hash); e != NULL; e = e->hnext)
        if (e->hash == hash && e->key_len == key_len && memcmp(e->bytes, key, key_len) == 0)
            return e;
    return NULL;
}

static void table_grow(shard_t *s)
{
    size_t n = s->num_buckets * 2;
    entry_t **buckets = weir_calloc(n, sizeof(buckets[0]));
    for (size_t i = 0; i < s->num_buckets; ++i) {
        entry_t *e = s->buckets[i];
        while (e != NULL) {
            entry_t *next = e->hnext;
            entry_t **b = &buckets[e->hash & (n - 1)];
            e->hnext = *b;
            *b = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = buckets;
    s->num_buckets = n;
}

/* Takes @p e out of every structure of the shard and pushes it on @p garbage (to be freed after unlocking). */
static void shard_remove(shard_t *s, entry_t *e, entry_t **garbage)
{
    entry_t **p = bucket_of(s, e->hash);
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    h2o_linklist_unlink(&e->lru);
    if (e->expires_at != 0)
        heap_remove(s, e);
    s->bytes -= entry_cost(e);
    --s->count;
    e->hnext = *garbage;
    *garbage = e;
}

static void shard_insert(shard_t *s, entry_t *e)
{
    if (s->count >= s->num_buckets)
        table_grow(s);
    entry_t **b = bucket_of(s, e->hash);
    e->hnext = *b;
    *b = e;
    h2o_linklist_insert(&s->lru, &e->lru);
    if (e->expires_at != 0)
        heap_push(s, e);
    s->bytes += entry_cost(e);
    ++s->count;
}

/* Reclaims up to @p max entries that have expired, earliest first. */
static void shard_reclaim_expired(shard_t *s, uint64_t now, size_t max, entry_t **garbage)
{
    while (max-- > 0 && s->heap_size != 0 && entry_is_expired(s->heap[0], now)) {
        shard_remove(s, s->heap[0], garbage);
        ++s->expirations;
    }
}

/* ---- the public API ------------------------------------------------------------------------------------------- */

size_t weir_cache_memory_entry_cost(size_t key_len, size_t value_len)
{
    return ENTRY_OVERHEAD + key_len + value_len;
}

weir_cache_memory_t *weir_cache_memory_create(const weir_cache_memory_options_t *opts)
{
    uint64_t largest = weir_cache_memory_entry_cost(opts->max_entry_size, 0);
    unsigned num_shards = opts->num_shards;

    if (opts->max_bytes < largest)
        return NULL;
    if (num_shards == 0) {
        num_shards = 1;
        while (num_shards < 64 && opts->max_bytes / (num_shards * 2) >= 4 * largest)
            num_shards *= 2;
    }
    if ((num_shards & (num_shards - 1)) != 0 || num_shards > 1024 || opts->max_bytes / num_shards < largest)
        return NULL;

    weir_cache_memory_t *m = weir_calloc(1, sizeof(*m));
    m->num_shards = num_shards;
    while ((1u << m->shard_bits) < num_shards)
        ++m->shard_bits;
    m->shard_max_bytes = opts->max_bytes / num_shards;
    m->now_ns = opts->now_ns != NULL ? opts->now_ns : monotonic_now_ns;
    m->clock_data = opts->clock_data;
    uint64_t seed[2];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        /* No entropy source: a weaker seed still varies between processes. */
        seed[0] = monotonic_now_ns(NULL) ^ ((uint64_t)getpid() << 32);
        seed[1] = (uint64_t)(uintptr_t)m ^ UINT64_C(0x9e3779b97f4a7c15);
    }
    m->sip_k0 = seed[0];
    m->sip_k1 = seed[1];

    m->shards = aligned_alloc(CACHE_LINE, (size_t)num_shards * SHARD_STRIDE);
    if (m->shards == NULL) {
        weir_error("out of memory");
        abort();
    }
    memset(m->shards, 0, (size_t)num_shards * SHARD_STRIDE);
    for (unsigned i = 0; i < num_shards; ++i) {
        shard_t *s = shard_at(m, i);
        pthread_mutex_init(&s->mutex, NULL);
        s->num_buckets = INITIAL_BUCKETS;
        s->buckets = weir_calloc(s->num_buckets, sizeof(s->buckets[0]));
        h2o_linklist_init_anchor(&s->lru);
        s->max_bytes = m->shard_max_bytes;
    }
    return m;
}

void weir_cache_memory_destroy(weir_cache_memory_t *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < m->num_shards; ++i) {
        shard_t *s = shard_at(m, i);
        for (size_t b = 0; b < s->num_buckets; ++b)
            free_list(s->buckets[b]);
        free(s->buckets);
        free(s->heap);
        pthread_mutex_destroy(&s->mutex);
    }
    free(m->shards);
    free(m);
}

int weir_cache_memory_set(weir_cache_memory_t *m, const void *key, size_t key_len, const void *value, size_t value_len,
                          uint32_t ttl_s)
{
    if (weir_cache_memory_entry_cost(key_len, value_len) > m->shard_max_bytes)
        return -E2BIG;

    entry_t *e = weir_malloc(sizeof(*e) + key_len + value_len + 1);
    e->refs = 1;
    e->hash = siphash13(m->sip_k0, m->sip_k1, key, key_len);
    e->key_len = key_len;
    e->value_len = value_len;
    memcpy(e->bytes, key, key_len);
    if (value_len != 0)
        memcpy(e->bytes + key_len, value, value_len);
    e->bytes[key_len + value_len] = '\0';
    e->heap_index = 0;
    e->lru = (h2o_linklist_t){NULL, NULL};

    shard_t *s = shard_for(m, e->hash);
    entry_t *garbage = NULL;
    uint64_t now = m->now_ns(m->clock_data);
    e->expires_at = ttl_s != 0 ? now + (uint64_t)ttl_s * 1000000000u : 0;

    pthread_mutex_lock(&s->mutex);
    entry_t *old = table_find(s, e->hash, key, key_len);
    if (old != NULL)
        shard_remove(s, old, &garbage);
    shard_reclaim_expired(s, now, RECLAIM_PER_OP, &garbage);
    while (s->bytes + entry_cost(e) > s->max_bytes) {
        /* Dead entries go before live ones; then the least recently used. */
        if (s->heap_size != 0 && entry_is_expired(s->heap[0], now)) {
            shard_remove(s, s->heap[0], &garbage);
            ++s->expirations;
        } else {
            shard_remove(s, H2O_STRUCT_FROM_MEMBER(entry_t, lru, s->lru.next), &garbage);
            ++s->evictions;
        }
    }
    shard_insert(s, e);
    pthread_mutex_unlock(&s->mutex);

    free_list(garbage);
    return 0;
}

/* Looks up key and, while the shard is locked, copies the live value (and its NUL) into alloc(alloc_data, size). */
static int memory_get(weir_cache_memory_t *m, const void *key, size_t key_len, void *(*alloc)(void *, size_t), void *alloc_data,
                      char **value, size_t *value_len)
{
    uint64_t hash = siphash13(m->sip_k0, m->sip_k1, key, key_len);
    shard_t *s = shard_for(m, hash);
    entry_t *garbage = NULL;
    int ret = -ENOENT;
    uint64_t now = m->now_ns(m->clock_data);

    pthread_mutex_lock(&s->mutex);
    entry_t *e = table_find(s, hash, key, key_len);
    if (e != NULL && entry_is_expired(e, now)) {
        shard_remove(s, e, &garbage);
        ++s->expirations;
        e = NULL;
    }
    if (e != NULL) {
        h2o_linklist_unlink(&e->lru);
        h2o_linklist_insert(&s->lru, &e->lru);
        *value_len = e->value_len;
        if (alloc != NULL) {
            *value = alloc(alloc_data, e->value_len + 1);
            memcpy(*value, e->bytes + e->key_len, e->value_len + 1);
        } else {
            /* shared: the caller's pool holds a reference (see get_shared) */
            __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
            *(entry_t **)alloc_data = e;
            *value = e->bytes + e->key_len;
        }
        ret = 0;
    }
    shard_reclaim_expired(s, now, RECLAIM_PER_OP, &garbage);
    pthread_mutex_unlock(&s->mutex);

    free_list(garbage);
    return ret;
}

static void *heap_alloc(void *unused, size_t size)
{
    return weir_malloc(size);
}

int weir_cache_memory_get(weir_cache_memory_t *m, const void *key, size_t key_len, char **value, size_t *value_len)
{
    return memory_get(m, key, key_len, heap_alloc, NULL, value, value_len);
}

static void on_shared_value_disposed(void *ref)
{
    entry_release(*(entry_t **)ref);
}

int weir_cache_memory_get_shared(weir_cache_memory_t *m, const void *key, size_t key_len, h2o_mem_pool_t *pool, h2o_iovec_t *value)
{
    entry_t *e = NULL;
    int ret = memory_get(m, key, key_len, NULL, &e, &value->base, &value->len);
    if (ret == 0) {
        entry_t **ref = h2o_mem_alloc_shared(pool, sizeof(*ref), on_shared_value_disposed);
        *ref = e;
    }
    return ret;
}

int weir_cache_memory_del(weir_cache_memory_t *m, const void *key, size_t key_len)
{
    uint64_t hash = siphash13(m->sip_k0, m->sip_k1, key, key_len);
    shard_t *s = shard_for(m, hash);
    entry_t *garbage = NULL;
    int deleted = 0;
    uint64_t now = m->now_ns(m->clock_data);

    pthread_mutex_lock(&s->mutex);
    entry_t *e = table_find(s, hash, key, key_len);
    if (e != NULL) {
        if (entry_is_expired(e, now)) {
            ++s->expirations;
        } else {
            deleted = 1;
        }
        shard_remove(s, e, &garbage);
    }
    shard_reclaim_expired(s, now, RECLAIM_PER_OP, &garbage);
    pthread_mutex_unlock(&s->mutex);

    free_list(garbage);
    return deleted;
}

void weir_cache_memory_stats(weir_cache_memory_t *m, weir_cache_memory_stats_t *stats)
{
    memset(stats, 0, sizeof(*stats));
    stats->num_shards = m->num_shards;
    stats->shard_max_bytes = m->shard_max_bytes;
    for (unsigned i = 0; i < m->num_shards; ++i) {
        shard_t *s = shard_at(m, i);
        pthread_mutex_lock(&s->mutex);
        stats->bytes += s->bytes;
        stats->entries += s->count;
        stats->evictions += s->evictions;
        stats->expirations += s->expirations;
        pthread_mutex_unlock(&s->mutex);
    }
}

static int shard_check(weir_cache_memory_t *m, unsigned index, shard_t *s)
{
    size_t count = 0, with_ttl = 0;
    uint64_t bytes = 0;

    for (size_t b = 0; b < s->num_buckets; ++b) {
        for (entry_t *e = s->buckets[b]; e != NULL; e = e->hnext) {
            if ((e->hash & (s->num_buckets - 1)) != b || shard_for(m, e->hash) != s)
                return -EFAULT;
            if (e->expires_at != 0) {
                if (e->heap_index >= s->heap_size || s->heap[e->heap_index] != e)
                    return -EFAULT;
                ++with_ttl;
            }
            bytes += entry_cost(e);
            ++count;
        }
    }
    if (count != s->count || bytes != s->bytes || with_ttl != s->heap_size || s->bytes > s->max_bytes)
        return -EFAULT;
    size_t in_lru = 0;
    for (h2o_linklist_t *l = s->lru.next; l != &s->lru; l = l->next)
        ++in_lru;
    if (in_lru != count)
        return -EFAULT;
    for (size_t i = 1; i < s->heap_size; ++i)
        if (s->heap[(i - 1) / 2]->expires_at > s->heap[i]->expires_at)
            return -EFAULT;
    return 0;
}

int weir_cache_memory_check(weir_cache_memory_t *m)
{
    int ret = 0;
    for (unsigned i = 0; i < m->num_shards && ret == 0; ++i) {
        shard_t *s = shard_at(m, i);
        pthread_mutex_lock(&s->mutex);
        ret = shard_check(m, i, s);
        pthread_mutex_unlock(&s->mutex);
    }
    return ret;
}

/* ---- the vtable ----------------------------------------------------------------------------------------------- */

static void backend_get(void *data, void *thread, weir_cache_call_t *call)
{
    weir_cache_result_t res = {0};

    if (call->pool != NULL) {
        res.status = weir_cache_memory_get_shared(data, call->key.base, call->key.len, call->pool, &res.value);
        call->on_done(call, &res);
        return;
    }
    char *value = NULL;
    size_t len = 0;
    res.status = weir_cache_memory_get(data, call->key.base, call->key.len, &value, &len);
    res.value = h2o_iovec_init(value, len);
    call->on_done(call, &res);
    free(value);
}

static void backend_set(void *data, void *thread, weir_cache_call_t *call)
{
    weir_cache_result_t res = {0};

    res.status = weir_cache_memory_set(data, call->key.base, call->key.len, call->value.base, call->value.len, call->ttl);
    if (res.status == -E2BIG)
        res.message = "the entry is larger than a shard of the memory cache";
    call->on_done(call, &res);
}

static void backend_del(void *data, void *thread, weir_cache_call_t *call)
{
    weir_cache_result_t res = {0};

    res.deleted = weir_cache_memory_del(data, call->key.base, call->key.len);
    call->on_done(call, &res);
}

static void backend_destroy(void *data)
{
    weir_cache_memory_destroy(data);
}

const weir_cache_backend_vtable_t weir_cache_memory_vtable = {
    .name = "memory",
    .completes_at_once = 1,
    .stores_replies = 1,
    .start = NULL,
    .stop = NULL,
    .get = backend_get,
    .set = backend_set,
    .del = backend_del,
    .destroy = backend_destroy,
};
