/* The memory backend of /cache: LRU order, TTLs, byte accounting, and concurrent use by several threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "unit.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "weir/cache.h"

#define SEC UINT64_C(1000000000)

static uint64_t fake_now(void *data)
{
    return *(uint64_t *)data;
}

static weir_cache_memory_t *create_store(uint64_t max_bytes, unsigned shards, uint64_t *clock)
{
    weir_cache_memory_options_t opts = {.max_bytes = max_bytes, .max_entry_size = 64, .num_shards = shards};
    if (clock != NULL) {
        opts.now_ns = fake_now;
        opts.clock_data = clock;
    }
    weir_cache_memory_t *m = weir_cache_memory_create(&opts);
    assert_non_null(m);
    return m;
}

static void assert_value(weir_cache_memory_t *m, const char *key, const char *expected)
{
    char *value = NULL;
    size_t len = 0;
    int ret = weir_cache_memory_get(m, key, strlen(key), &value, &len);
    if (expected == NULL) {
        assert_int_equal(ret, -ENOENT);
        return;
    }
    assert_int_equal(ret, 0);
    assert_int_equal(len, strlen(expected));
    assert_memory_equal(value, expected, len);
    assert_int_equal(value[len], '\0');
    free(value);
}

static void put(weir_cache_memory_t *m, const char *key, const char *value, uint32_t ttl)
{
    assert_int_equal(weir_cache_memory_set(m, key, strlen(key), value, strlen(value), ttl), 0);
}

static void test_set_get_del(void **state)
{
    weir_cache_memory_t *m = create_store(1 << 20, 0, NULL);

    assert_value(m, "a", NULL);
    put(m, "a", "one", 0);
    assert_value(m, "a", "one");
    put(m, "a", "uno", 0);
    assert_value(m, "a", "uno");
    put(m, "empty", "", 0);
    assert_value(m, "empty", "");
    assert_int_equal(weir_cache_memory_del(m, "a", 1), 1);
    assert_int_equal(weir_cache_memory_del(m, "a", 1), 0);
    assert_value(m, "a", NULL);
    assert_int_equal(weir_cache_memory_check(m), 0);
    weir_cache_memory_destroy(m);
}

static void test_binary_keys(void **state)
{
    weir_cache_memory_t *m = create_store(1 << 20, 0, NULL);
    const char k1[] = {'a', '\0', 'b'}, k2[] = {'a', '\0', 'c'}, k3[] = {'a'};
    char *v;
    size_t len;

    assert_int_equal(weir_cache_memory_set(m, k1, sizeof(k1), "1", 1, 0), 0);
    assert_int_equal(weir_cache_memory_set(m, k2, sizeof(k2), "2\0x", 3, 0), 0);
    assert_int_equal(weir_cache_memory_get(m, k3, sizeof(k3), &v, &len), -ENOENT);
    assert_int_equal(weir_cache_memory_get(m, k2, sizeof(k2), &v, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "2\0x", 3);
    free(v);
    assert_int_equal(weir_cache_memory_get(m, k1, sizeof(k1), &v, &len), 0);
    assert_memory_equal(v, "1", 2);
    free(v);
    weir_cache_memory_destroy(m);
}

static void test_accounting(void **state)
{
    weir_cache_memory_t *m = create_store(1 << 20, 4, NULL);
    weir_cache_memory_stats_t st;

    put(m, "k1", "12345", 0);
    put(m, "key2", "", 0);
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, weir_cache_memory_entry_cost(2, 5) + weir_cache_memory_entry_cost(4, 0));
    assert_int_equal(st.num_shards, 4);
    assert_int_equal(st.shard_max_bytes, (1 << 20) / 4);

    put(m, "k1", "123456789", 0); /* replacing charges the new size only */
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, weir_cache_memory_entry_cost(2, 9) + weir_cache_memory_entry_cost(4, 0));

    assert_int_equal(weir_cache_memory_del(m, "k1", 2), 1);
    assert_int_equal(weir_cache_memory_del(m, "key2", 4), 1);
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(weir_cache_memory_check(m), 0);
    weir_cache_memory_destroy(m);
}

static void test_eviction_order(void **state)
{
    /* One shard holding exactly three entries of this size. */
    size_t cost = weir_cache_memory_entry_cost(1, 10);
    weir_cache_memory_t *m = create_store(3 * cost + cost / 2, 1, NULL);
    weir_cache_memory_stats_t st;

    put(m, "a", "aaaaaaaaaa", 0);
    put(m, "b", "bbbbbbbbbb", 0);
    put(m, "c", "cccccccccc", 0);
    assert_value(m, "a", "aaaaaaaaaa"); /* a becomes the most recently used: b is now the oldest */
    put(m, "d", "dddddddddd", 0);
    assert_value(m, "b", NULL);
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.entries, 3);

    put(m, "c", "CCCCCCCCCC", 0); /* replacing also counts as a use: order now a, d, c */
    put(m, "e", "eeeeeeeeee", 0);
    assert_value(m, "a", NULL);
    assert_value(m, "d", "dddddddddd");
    assert_value(m, "c", "CCCCCCCCCC");
    assert_value(m, "e", "eeeeeeeeee");

    /* A larger entry evicts as many of the oldest as it needs: d then c. */
    put(m, "f", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", 0);
    assert_value(m, "d", NULL);
    assert_value(m, "c", NULL);
    assert_value(m, "e", "eeeeeeeeee");
    assert_value(m, "f", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.evictions, 4);
    assert_true(st.bytes <= st.shard_max_bytes);
    assert_int_equal(weir_cache_memory_check(m), 0);
    weir_cache_memory_destroy(m);
}

static void test_too_large(void **state)
{
    size_t cost = weir_cache_memory_entry_cost(1, 10);
    weir_cache_memory_t *m = create_store(2 * cost, 1, NULL);
    char big[100];
    memset(big, 'x', sizeof(big));

    put(m, "a", "aaaaaaaaaa", 0);
    assert_int_equal(weir_cache_memory_set(m, "b", 1, big, sizeof(big), 0), -E2BIG);
    assert_value(m, "a", "aaaaaaaaaa"); /* nothing evicted for an entry that can never fit */

    weir_cache_memory_options_t opts = {.max_bytes = 100, .max_entry_size = 1000};
    assert_null(weir_cache_memory_create(&opts));
    weir_cache_memory_destroy(m);
}

static void test_ttl_exact(void **state)
{
    uint64_t now = 1000 * SEC;
    weir_cache_memory_t *m = create_store(1 << 20, 0, &now);

    put(m, "t", "v", 5);
    put(m, "forever", "v", 0);
    now += 5 * SEC - 1;
    assert_value(m, "t", "v");
    now += 1;
    assert_value(m, "t", NULL);
    assert_value(m, "forever", "v");

    /* Replacing an entry replaces its TTL, with or without one. */
    put(m, "t", "v2", 1);
    put(m, "t", "v3", 0);
    now += 10 * SEC;
    assert_value(m, "t", "v3");
    put(m, "t", "v4", 2);
    now += 1 * SEC;
    put(m, "t", "v5", 2); /* a fresh TTL from now */
    now += 2 * SEC - 1;
    assert_value(m, "t", "v5");
    now += 1;
    assert_value(m, "t", NULL);

    /* Deleting an expired entry reports nothing deleted. */
    put(m, "d", "v", 1);
    now += SEC;
    assert_int_equal(weir_cache_memory_del(m, "d", 1), 0);
    assert_int_equal(weir_cache_memory_check(m), 0);
    weir_cache_memory_destroy(m);
}

static void test_expired_reclaimed_in_passing(void **state)
{
    uint64_t now = 0;
    weir_cache_memory_t *m = create_store(1 << 20, 1, &now);
    weir_cache_memory_stats_t st;
    char key[16];

    for (int i = 0; i < 100; ++i) {
        snprintf(key, sizeof(key), "k%d", i);
        put(m, key, "value", 1 + i % 3);
    }
    put(m, "live", "value", 0);
    now += 4 * SEC;
    /* No read of any expired key: operations on other keys reclaim a few each, from the heap's top. */
    for (int i = 0; i < 100; ++i)
        assert_int_equal(weir_cache_memory_del(m, "missing", 7), 0);
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.expirations, 100);
    assert_int_equal(st.bytes, weir_cache_memory_entry_cost(4, 5));
    assert_int_equal(weir_cache_memory_check(m), 0);
    weir_cache_memory_destroy(m);
}

static void test_expired_evicted_before_live(void **state)
{
    uint64_t now = 0;
    size_t cost = weir_cache_memory_entry_cost(1, 10);
    weir_cache_memory_t *m = create_store(3 * cost, 1, &now);
    weir_cache_memory_stats_t st;

    put(m, "a", "aaaaaaaaaa", 0); /* oldest, live */
    put(m, "b", "bbbbbbbbbb", 1);
    put(m, "c", "cccccccccc", 0);
    now += 2 * SEC;
    put(m, "d", "dddddddddd", 0); /* b is dead: it goes, a stays although older */
    assert_value(m, "a", "aaaaaaaaaa");
    assert_value(m, "c", "cccccccccc");
    assert_value(m, "d", "dddddddddd");
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.expirations, 1);
    weir_cache_memory_destroy(m);
}

static void test_many_keys(void **state)
{
    weir_cache_memory_t *m = create_store(64 << 20, 0, NULL);
    weir_cache_memory_stats_t st;
    char key[32], value[32];

    for (int i = 0; i < 20000; ++i) {
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(value, sizeof(value), "value-%d", i * 7);
        put(m, key, value, i % 2 ? 1000 : 0);
    }
    assert_int_equal(weir_cache_memory_check(m), 0);
    for (int i = 0; i < 20000; ++i) {
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(value, sizeof(value), "value-%d", i * 7);
        assert_value(m, key, value);
    }
    for (int i = 0; i < 20000; i += 2) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(weir_cache_memory_del(m, key, strlen(key)), 1);
    }
    weir_cache_memory_stats(m, &st);
    assert_int_equal(st.entries, 10000);
    assert_int_equal(st.evictions, 0);
    assert_true(st.num_shards > 1);
    assert_int_equal(weir_cache_memory_check(m), 0);
    weir_cache_memory_destroy(m);
}

/* ---- threads -------------------------------------------------------------------------------------------------- */

#define NUM_THREADS 4
#define NUM_KEYS 200
#define OPS_PER_THREAD 40000

typedef struct {
    weir_cache_memory_t *m;
    unsigned id;
    uint64_t rng;
    unsigned long hits, torn;
} worker_t;

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A value names its key and repeats one byte, so a reader can tell a torn or misplaced copy. */
static size_t make_value(char *buf, unsigned key, unsigned writer, unsigned seq)
{
    int n = snprintf(buf, 64, "%u:%u:%u:", key, writer, seq);
    size_t len = (size_t)n + (seq % 400);
    memset(buf + n, 'a' + (int)(key % 26), len - (size_t)n);
    return len;
}

static int value_is_sound(const char *v, size_t len, unsigned key)
{
    unsigned k, w, s;
    int n;
    if (sscanf(v, "%u:%u:%u:%n", &k, &w, &s, &n) != 3 || k != key)
        return 0;
    for (size_t i = (size_t)n; i < len; ++i)
        if (v[i] != 'a' + (int)(key % 26))
            return 0;
    return len == (size_t)n + s % 400;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    char key[16], value[512];

    for (unsigned i = 0; i < OPS_PER_THREAD; ++i) {
        uint64_t r = xorshift(&w->rng);
        unsigned k = (unsigned)(r % NUM_KEYS);
        size_t klen = (size_t)snprintf(key, sizeof(key), "key%u", k);
        switch ((r >> 32) % 10) {
        case 0:
        case 1:
        case 2: {
            size_t vlen = make_value(value, k, w->id, i);
            if (weir_cache_memory_set(w->m, key, klen, value, vlen, (r >> 40) % 4 == 0 ? 1 : 0) != 0)
                ++w->torn;
        } break;
        case 3:
            weir_cache_memory_del(w->m, key, klen);
            break;
        default: {
            char *v;
            size_t vlen;
            if (weir_cache_memory_get(w->m, key, klen, &v, &vlen) == 0) {
                ++w->hits;
                if (!value_is_sound(v, vlen, k))
                    ++w->torn;
                free(v);
            }
        } break;
        }
    }
    return NULL;
}

static void test_concurrent_access(void **state)
{
    /* Small enough that the threads also evict each other's entries all the time. */
    weir_cache_memory_options_t opts = {.max_bytes = 16 * 1024, .max_entry_size = 600, .num_shards = 4};
    weir_cache_memory_t *m = weir_cache_memory_create(&opts);
    pthread_t threads[NUM_THREADS];
    worker_t workers[NUM_THREADS];
    weir_cache_memory_stats_t st;

    assert_non_null(m);
    for (unsigned i = 0; i < NUM_THREADS; ++i) {
        workers[i] = (worker_t){.m = m, .id = i, .rng = 0x9e3779b97f4a7c15u * (i + 1)};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
    }
    unsigned long hits = 0;
    for (unsigned i = 0; i < NUM_THREADS; ++i) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(workers[i].torn, 0);
        hits += workers[i].hits;
    }
    assert_true(hits > 0);
    assert_int_equal(weir_cache_memory_check(m), 0);
    weir_cache_memory_stats(m, &st);
    assert_true(st.bytes <= opts.max_bytes);
    assert_true(st.evictions > 0);
    weir_cache_memory_destroy(m);
}

typedef struct {
    weir_cache_memory_t *m;
    const char *key, *value;
    int found;
} visibility_t;

static void *set_in_thread(void *arg)
{
    visibility_t *v = arg;
    weir_cache_memory_set(v->m, v->key, strlen(v->key), v->value, strlen(v->value), 0);
    return NULL;
}

static void *get_in_thread(void *arg)
{
    visibility_t *v = arg;
    char *value;
    size_t len;
    if (weir_cache_memory_get(v->m, v->key, strlen(v->key), &value, &len) == 0) {
        v->found = len == strlen(v->value) && memcmp(value, v->value, len) == 0;
        free(value);
    }
    return NULL;
}

static void test_cross_thread_visibility(void **state)
{
    weir_cache_memory_t *m = create_store(1 << 20, 0, NULL);
    visibility_t v = {.m = m, .key = "shared", .value = "seen elsewhere"};
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, set_in_thread, &v), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(pthread_create(&t, NULL, get_in_thread, &v), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(v.found);
    weir_cache_memory_destroy(m);
}

/* ---- the vtable ----------------------------------------------------------------------------------------------- */

typedef struct {
    weir_cache_call_t call;
    int done;
    weir_cache_result_t res;
    char value[64];
} call_t;

static void on_done(weir_cache_call_t *_call, const weir_cache_result_t *res)
{
    call_t *c = (call_t *)_call;
    ++c->done;
    c->res = *res;
    if (res->status == 0 && res->value.base != NULL) {
        memcpy(c->value, res->value.base, res->value.len);
        c->value[res->value.len] = '\0';
    }
}

static void run(void (*op)(void *, void *, weir_cache_call_t *), void *data, call_t *c, const char *key, const char *value,
                uint32_t ttl)
{
    memset(c, 0, sizeof(*c));
    c->call.key = h2o_iovec_init(key, strlen(key));
    if (value != NULL)
        c->call.value = h2o_iovec_init(value, strlen(value));
    c->call.ttl = ttl;
    c->call.on_done = on_done;
    op(data, NULL, &c->call);
    assert_int_equal(c->done, 1); /* synchronously, exactly once */
}

static void test_vtable(void **state)
{
    const weir_cache_backend_vtable_t *vt = &weir_cache_memory_vtable;
    weir_cache_memory_t *m = create_store(1 << 20, 0, NULL);
    call_t c;

    assert_null(vt->start);
    run(vt->get, m, &c, "k", NULL, 0);
    assert_int_equal(c.res.status, -ENOENT);
    run(vt->set, m, &c, "k", "hello", 10);
    assert_int_equal(c.res.status, 0);
    run(vt->get, m, &c, "k", NULL, 0);
    assert_int_equal(c.res.status, 0);
    assert_string_equal(c.value, "hello");
    run(vt->del, m, &c, "k", NULL, 0);
    assert_int_equal(c.res.status, 0);
    assert_int_equal(c.res.deleted, 1);
    run(vt->del, m, &c, "k", NULL, 0);
    assert_int_equal(c.res.deleted, 0);
    vt->destroy(m);
}

/* With call.pool set, the value handed to on_done is a copy in that pool: it outlives the call, stays unchanged when
 * the entry is replaced or deleted, and is freed with the pool (ASan/LSan check both). */
static void test_get_into_pool(void **state)
{
    const weir_cache_backend_vtable_t *vt = &weir_cache_memory_vtable;
    weir_cache_memory_t *m = create_store(1 << 20, 0, NULL);
    h2o_mem_pool_t pool;
    call_t c;
    h2o_iovec_t v;

    assert_true(vt->completes_at_once);
    h2o_mem_init_pool(&pool);
    run(vt->set, m, &c, "k", "first value", 0);
    memset(&c, 0, sizeof(c));
    c.call.key = h2o_iovec_init(H2O_STRLIT("k"));
    c.call.on_done = on_done;
    c.call.pool = &pool;
    vt->get(m, NULL, &c.call);
    assert_int_equal(c.done, 1);
    assert_int_equal(c.res.status, 0);
    v = c.res.value;
    assert_int_equal(v.len, strlen("first value"));
    run(vt->set, m, &c, "k", "other value", 0);
    run(vt->del, m, &c, "k", NULL, 0);
    assert_memory_equal(v.base, "first value", v.len + 1); /* with its NUL */

    assert_int_equal(weir_cache_memory_get_shared(m, H2O_STRLIT("k"), &pool, &v), -ENOENT);
    h2o_mem_clear_pool(&pool);
    vt->destroy(m);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_set_get_del), cmocka_unit_test(test_binary_keys), cmocka_unit_test(test_accounting),
                cmocka_unit_test(test_eviction_order), cmocka_unit_test(test_too_large), cmocka_unit_test(test_ttl_exact),
                cmocka_unit_test(test_expired_reclaimed_in_passing), cmocka_unit_test(test_expired_evicted_before_live),
                cmocka_unit_test(test_many_keys), cmocka_unit_test(test_concurrent_access),
                cmocka_unit_test(test_cross_thread_visibility), cmocka_unit_test(test_vtable), cmocka_unit_test(test_get_into_pool))
