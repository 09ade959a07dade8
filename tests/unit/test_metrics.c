#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "unit.h"
#include "weir/metrics.h"

/* The exposition of @p reg, as a NUL-terminated string in @p pool. */
static const char *expose(weir_metrics_t *reg, h2o_mem_pool_t *pool)
{
    return weir_metrics_expose(reg, pool).base;
}

static void test_counter_and_gauge(void **state)
{
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *c = weir_metrics_counter(reg, "t_requests_total", "Requests", "path", "/calc");
    weir_metric_t *g = weir_metrics_gauge(reg, "t_in_flight", "In flight", NULL);

    for (int i = 0; i != 7; ++i)
        weir_metric_inc(c);
    weir_metric_add(c, 10);
    weir_metric_gauge_add(g, 5);
    weir_metric_gauge_add(g, -7);
    assert_true(weir_metrics_value(c) == 17);
    assert_true(weir_metrics_value(g) == -2);

    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    assert_string_equal(expose(reg, &pool), "# HELP t_in_flight In flight\n"
                                            "# TYPE t_in_flight gauge\n"
                                            "t_in_flight -2\n"
                                            "# HELP t_requests_total Requests\n"
                                            "# TYPE t_requests_total counter\n"
                                            "t_requests_total{path=\"/calc\"} 17\n");
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static void test_same_series_again(void **state)
{
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *a = weir_metrics_counter(reg, "t_total", "Help", "path,method", "/a", "GET");
    weir_metric_t *b = weir_metrics_counter(reg, "t_total", "Help", "path,method", "/a", "GET");
    weir_metric_t *c = weir_metrics_counter(reg, "t_total", "Help", "path,method", "/a", "PUT");

    /* a new configuration generation finds its series again and counts on */
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    weir_metric_inc(a);
    weir_metric_inc(b);
    weir_metric_inc(c);
    assert_true(weir_metrics_value(a) == 2);
    assert_true(weir_metrics_value(c) == 1);

    /* the same name with another type, help, labels or buckets is refused; what is then counted is shown nowhere */
    assert_null(weir_metrics_family(reg, WEIR_METRICS_GAUGE, "t_total", "Help", "path,method", NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "t_total", "Other help", "path,method", NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "t_total", "Help", "path", NULL));
    weir_metric_t *sink = weir_metrics_gauge(reg, "t_total", "Help", "path,method", "/a", "GET");
    weir_metric_gauge_add(sink, 100);
    assert_true(weir_metrics_value(a) == 2);
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    assert_string_equal(expose(reg, &pool), "# HELP t_total Help\n"
                                            "# TYPE t_total counter\n"
                                            "t_total{path=\"/a\",method=\"GET\"} 2\n"
                                            "t_total{path=\"/a\",method=\"PUT\"} 1\n");
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static void test_invalid_names(void **state)
{
    static const uint64_t bounds[] = {1, 2}, unordered[] = {2, 1};
    static const weir_metrics_buckets_t b = {2, bounds, 1}, bad = {2, unordered, 1};
    weir_metrics_t *reg = weir_metrics_create();

    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "", "h", NULL, NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "1abc", "h", NULL, NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "a-b", "h", NULL, NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "__reserved", "h", NULL, NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "ok_total", "h", "__x", NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "ok_total", "h", "a:b", NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "ok_total", "h", "a,a", NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "ok_total", "h", "a,,b", NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "ok_total", "h", "a,b,c,d,e,f,g,h,i", NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_HISTOGRAM, "ok_seconds", "h", "le", &b));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_HISTOGRAM, "ok_seconds", "h", NULL, NULL));
    assert_null(weir_metrics_family(reg, WEIR_METRICS_HISTOGRAM, "ok_seconds", "h", NULL, &bad));
    /* and what is valid */
    assert_non_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "ns:ok_total", "h", "le,_x,a1", NULL));
    assert_non_null(weir_metrics_family(reg, WEIR_METRICS_HISTOGRAM, "ok_seconds", "h", "path", &b));
    weir_metrics_destroy(reg);
}

static void test_histogram_buckets(void **state)
{
    static const uint64_t bounds[] = {10, 20, 30};
    static const weir_metrics_buckets_t b = {3, bounds, 1};
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *h = weir_metrics_histogram(reg, "t_size_bytes", "Sizes", &b, "path", "/x");

    /* le is "less than or equal": 10 goes to le="10", 11 to le="20" */
    static const uint64_t values[] = {0, 10, 11, 20, 25, 31, 1000};
    for (size_t i = 0; i != sizeof(values) / sizeof(values[0]); ++i)
        weir_metric_observe(h, values[i]);
    assert_true(weir_metrics_value(h) == 7);
    assert_true(weir_metrics_histogram_sum(h) == 1097);

    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    assert_string_equal(expose(reg, &pool), "# HELP t_size_bytes Sizes\n"
                                            "# TYPE t_size_bytes histogram\n"
                                            "t_size_bytes_bucket{path=\"/x\",le=\"10\"} 2\n"
                                            "t_size_bytes_bucket{path=\"/x\",le=\"20\"} 4\n"
                                            "t_size_bytes_bucket{path=\"/x\",le=\"30\"} 5\n"
                                            "t_size_bytes_bucket{path=\"/x\",le=\"+Inf\"} 7\n"
                                            "t_size_bytes_sum{path=\"/x\"} 1097\n"
                                            "t_size_bytes_count{path=\"/x\"} 7\n");
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static void test_histogram_in_seconds(void **state)
{
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *h = weir_metrics_histogram(reg, "t_duration_seconds", "D", &weir_metrics_seconds_buckets, NULL);

    weir_metric_observe(h, 100000);      /* 100 us: the first bucket */
    weir_metric_observe(h, 1500000);     /* 1.5 ms */
    weir_metric_observe(h, 30000000000); /* 30 s */
    weir_metric_observe(h, UINT64_C(120000000000));

    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    const char *text = expose(reg, &pool);
    assert_non_null(strstr(text, "t_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
    assert_non_null(strstr(text, "t_duration_seconds_bucket{le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "t_duration_seconds_bucket{le=\"0.0025\"} 2\n"));
    assert_non_null(strstr(text, "t_duration_seconds_bucket{le=\"30\"} 3\n"));
    assert_non_null(strstr(text, "t_duration_seconds_bucket{le=\"60\"} 3\n"));
    assert_non_null(strstr(text, "t_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "t_duration_seconds_sum 150.0016\n"));
    assert_non_null(strstr(text, "t_duration_seconds_count 4\n"));
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static void test_escaping(void **state)
{
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *c = weir_metrics_counter(reg, "t_total", "A \"quoted\" help\\text\nover two lines", "path,v", "/a\"b\\c\nd", "");
    weir_metric_inc(c);

    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    /* HELP escapes backslash and line feed (not the quote); label values also escape the quote */
    assert_string_equal(expose(reg, &pool), "# HELP t_total A \"quoted\" help\\\\text\\nover two lines\n"
                                            "# TYPE t_total counter\n"
                                            "t_total{path=\"/a\\\"b\\\\c\\nd\",v=\"\"} 1\n");
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static double read_double(void *data)
{
    return *(double *)data;
}

static void test_callbacks(void **state)
{
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *items = weir_metrics_gauge(reg, "t_items", "Items", NULL);
    weir_metric_t *evictions = weir_metrics_counter(reg, "t_evictions_total", "Evictions", NULL);
    weir_metric_t *h = weir_metrics_histogram(reg, "t_seconds", "H", &weir_metrics_seconds_buckets, NULL);
    double store1 = 3, store2 = 4, ev1 = 10;

    /* one store added twice (two configuration generations share it) is counted once; two stores are summed */
    assert_int_equal(weir_metrics_add_callback(items, read_double, &store1), 0);
    assert_int_equal(weir_metrics_add_callback(items, read_double, &store1), 0);
    assert_int_equal(weir_metrics_add_callback(items, read_double, &store2), 0);
    weir_metric_gauge_add(items, 1); /* cells and callbacks add up */
    assert_true(weir_metrics_value(items) == 8);
    assert_int_equal(weir_metrics_remove_callback(items, read_double, &store1), 0);
    assert_true(weir_metrics_value(items) == 8);
    assert_int_equal(weir_metrics_remove_callback(items, read_double, &store1), 0);
    assert_true(weir_metrics_value(items) == 5);
    assert_int_equal(weir_metrics_remove_callback(items, read_double, &store1), -ENOENT);

    /* a counter keeps what a removed callback last said: it never goes backwards when its store goes away */
    assert_int_equal(weir_metrics_add_callback(evictions, read_double, &ev1), 0);
    assert_true(weir_metrics_value(evictions) == 10);
    ev1 = 12;
    assert_int_equal(weir_metrics_remove_callback(evictions, read_double, &ev1), 0);
    ev1 = 0;
    assert_true(weir_metrics_value(evictions) == 12);

    assert_int_equal(weir_metrics_add_callback(h, read_double, &store2), -EINVAL);

    /* values that are not integers */
    double tenth = 0.1, nan = NAN, inf = INFINITY;
    weir_metric_t *a = weir_metrics_gauge(reg, "t_a", "A", NULL), *b = weir_metrics_gauge(reg, "t_b", "B", NULL),
                  *c = weir_metrics_gauge(reg, "t_c", "C", NULL);
    weir_metrics_add_callback(a, read_double, &tenth);
    weir_metrics_add_callback(b, read_double, &nan);
    weir_metrics_add_callback(c, read_double, &inf);
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    const char *text = expose(reg, &pool);
    assert_non_null(strstr(text, "\nt_a 0.1\n"));
    assert_non_null(strstr(text, "\nt_b NaN\n"));
    assert_non_null(strstr(text, "\nt_c +Inf\n"));
    assert_non_null(strstr(text, "\nt_evictions_total 12\n"));
    assert_non_null(strstr(text, "\nt_items 5\n"));
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static void test_sorted_and_empty_families_hidden(void **state)
{
    weir_metrics_t *reg = weir_metrics_create();
    weir_metrics_gauge(reg, "t_zz", "Z", NULL);
    /* a family whose series are made on first use shows nothing until then */
    assert_non_null(weir_metrics_family(reg, WEIR_METRICS_COUNTER, "t_empty_total", "E", "a", NULL));
    weir_metrics_gauge(reg, "t_aa", "A", NULL);

    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    assert_string_equal(expose(reg, &pool), "# HELP t_aa A\n# TYPE t_aa gauge\nt_aa 0\n"
                                            "# HELP t_zz Z\n# TYPE t_zz gauge\nt_zz 0\n");
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

/* ---- threads ---------------------------------------------------------------------------------------------------- */

enum { THREADS = 6, PER_THREAD = 200000 };

typedef struct st_counting_t {
    weir_metric_t *counter, *gauge, *histogram;
    int started; /* atomic */
} counting_t;

static void *count_a_lot(void *_c)
{
    counting_t *c = _c;
    __atomic_add_fetch(&c->started, 1, __ATOMIC_RELAXED);
    for (uint64_t i = 0; i != PER_THREAD; ++i) {
        weir_metric_inc(c->counter);
        weir_metric_gauge_add(c->gauge, (i & 1) ? -1 : 2);
        weir_metric_observe(c->histogram, i % 100);
    }
    return NULL;
}

static void test_sum_over_threads(void **state)
{
    static const uint64_t bounds[] = {9, 49};
    static const weir_metrics_buckets_t b = {2, bounds, 1};
    weir_metrics_t *reg = weir_metrics_create();
    counting_t c = {weir_metrics_counter(reg, "t_total", "T", NULL), weir_metrics_gauge(reg, "t_g", "G", NULL),
                    weir_metrics_histogram(reg, "t_h", "H", &b, NULL), 0};
    pthread_t tids[THREADS];

    for (int i = 0; i != THREADS; ++i)
        assert_int_equal(pthread_create(tids + i, NULL, count_a_lot, &c), 0);
    /* scrapes while the threads count: a counter summed over shards never goes backwards */
    double last = 0;
    for (int scrape = 0; scrape != 200; ++scrape) {
        double v = weir_metrics_value(c.counter);
        assert_true(v >= last);
        assert_true(v <= (double)THREADS * PER_THREAD);
        last = v;
        h2o_mem_pool_t pool;
        h2o_mem_init_pool(&pool);
        expose(reg, &pool);
        h2o_mem_clear_pool(&pool);
    }
    for (int i = 0; i != THREADS; ++i)
        pthread_join(tids[i], NULL);

    /* exact once they are done: nothing lost to a race */
    assert_true(weir_metrics_value(c.counter) == (double)THREADS * PER_THREAD);
    assert_true(weir_metrics_value(c.gauge) == (double)THREADS * (PER_THREAD / 2));
    assert_true(weir_metrics_value(c.histogram) == (double)THREADS * PER_THREAD);
    /* per thread: 0..99 repeated 2000 times, sum 4950 each */
    assert_true(weir_metrics_histogram_sum(c.histogram) == (double)THREADS * (PER_THREAD / 100) * 4950);
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    const char *text = expose(reg, &pool);
    char expect[128];
    snprintf(expect, sizeof(expect), "t_h_bucket{le=\"9\"} %d\n", THREADS * (PER_THREAD / 100) * 10);
    assert_non_null(strstr(text, expect));
    snprintf(expect, sizeof(expect), "t_h_bucket{le=\"49\"} %d\n", THREADS * (PER_THREAD / 100) * 50);
    assert_non_null(strstr(text, expect));
    snprintf(expect, sizeof(expect), "t_h_bucket{le=\"+Inf\"} %d\n", THREADS * PER_THREAD);
    assert_non_null(strstr(text, expect));
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static void *count_once(void *_m)
{
    weir_metric_add(_m, 5);
    return NULL;
}

static void test_exited_threads_hand_their_shard_on(void **state)
{
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *c = weir_metrics_counter(reg, "t_total", "T", NULL);

    /* threads that come and go one after another (worker threads of successive generations) share one shard */
    for (int i = 0; i != 20; ++i) {
        pthread_t tid;
        assert_int_equal(pthread_create(&tid, NULL, count_once, c), 0);
        pthread_join(tid, NULL);
    }
    assert_true(weir_metrics_value(c) == 100);
    assert_int_equal(weir_metrics_num_shards(reg), 1);
    /* this thread takes the free shard over, and keeps it: the next thread gets one of its own */
    weir_metric_inc(c);
    assert_int_equal(weir_metrics_num_shards(reg), 1);
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, count_once, c), 0);
    pthread_join(tid, NULL);
    assert_int_equal(weir_metrics_num_shards(reg), 2);
    assert_true(weir_metrics_value(c) == 106);
    weir_metrics_destroy(reg);
}

static void test_registries_apart(void **state)
{
    /* a thread that counts into two registries, one of them destroyed and another made (it may reuse the address) */
    weir_metrics_t *a = weir_metrics_create(), *b = weir_metrics_create();
    weir_metric_t *ca = weir_metrics_counter(a, "t_total", "T", NULL), *cb = weir_metrics_counter(b, "t_total", "T", NULL);
    weir_metric_inc(ca);
    weir_metric_inc(cb);
    weir_metric_inc(cb);
    weir_metric_inc(ca);
    assert_true(weir_metrics_value(ca) == 2);
    assert_true(weir_metrics_value(cb) == 2);
    weir_metrics_destroy(a);
    weir_metrics_t *c = weir_metrics_create();
    weir_metric_t *cc = weir_metrics_counter(c, "t_total", "T", NULL);
    weir_metric_inc(cc);
    weir_metric_inc(cb);
    assert_true(weir_metrics_value(cc) == 1);
    assert_true(weir_metrics_value(cb) == 3);
    weir_metrics_destroy(b);
    weir_metrics_destroy(c);
}

static void test_registry_full(void **state)
{
    static const uint64_t bounds[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30};
    static const weir_metrics_buckets_t b = {30, bounds, 1};
    weir_metrics_t *reg = weir_metrics_create();
    weir_metric_t *last = NULL, *over;
    char label[32];
    int made = 0;

    /* 32 cells each, 16 to a chunk: fill every cell the registry has; a series that counts into the sink reads 0 */
    for (;; ++made) {
        snprintf(label, sizeof(label), "%d", made);
        weir_metric_t *m = weir_metrics_histogram(reg, "t_seconds", "H", &b, "n", label);
        weir_metric_observe(m, 3);
        if (weir_metrics_value(m) != 1)
            break;
        last = m;
    }
    /* every chunk but the first (which begins with the sink) holds 16 */
    assert_int_equal(made, (WEIR_METRICS_MAX_CHUNKS - 1) * 16 + (WEIR_METRICS_CHUNK_CELLS - (WEIR_METRICS_MAX_BUCKETS + 2)) / 32);
    over = weir_metrics_histogram(reg, "t_seconds", "H", &b, "n", "over");
    weir_metric_observe(over, 3); /* into the sink: no crash, shown nowhere */
    weir_metric_t *counter = weir_metrics_counter(reg, "t_more_total", "M", NULL);
    weir_metric_inc(counter);
    assert_true(weir_metrics_value(last) == 1);
    assert_true(weir_metrics_value(counter) == 0);
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    const char *text = expose(reg, &pool);
    assert_null(strstr(text, "n=\"over\""));
    assert_null(strstr(text, "t_more_total"));
    h2o_mem_clear_pool(&pool);
    weir_metrics_destroy(reg);
}

static void test_process_series(void **state)
{
    weir_metrics_t *reg = weir_metrics_default();
    h2o_mem_pool_t pool;

    assert_ptr_equal(reg, weir_metrics_default());
    weir_metrics_reload_succeeded();
    weir_metrics_reload_succeeded();
    weir_metrics_reload_failed();
    h2o_mem_init_pool(&pool);
    const char *text = expose(reg, &pool);
    assert_non_null(strstr(text, "\nweir_build_info{version=\"" WEIR_VERSION "\"} 1\n"));
    assert_non_null(strstr(text, "\nweir_config_reloads_total{result=\"success\"} 2\n"));
    assert_non_null(strstr(text, "\nweir_config_reloads_total{result=\"failure\"} 1\n"));
    assert_non_null(strstr(text, "\nweir_config_last_reload_successful 0\n"));
    assert_non_null(strstr(text, "\nprocess_open_fds "));
    assert_non_null(strstr(text, "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    h2o_mem_clear_pool(&pool);
    weir_metrics_reload_succeeded();
    h2o_mem_init_pool(&pool);
    assert_non_null(strstr(expose(reg, &pool), "\nweir_config_last_reload_successful 1\n"));
    h2o_mem_clear_pool(&pool);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_counter_and_gauge), cmocka_unit_test(test_same_series_again),
                cmocka_unit_test(test_invalid_names), cmocka_unit_test(test_histogram_buckets),
                cmocka_unit_test(test_histogram_in_seconds), cmocka_unit_test(test_escaping), cmocka_unit_test(test_callbacks),
                cmocka_unit_test(test_sorted_and_empty_families_hidden), cmocka_unit_test(test_sum_over_threads),
                cmocka_unit_test(test_exited_threads_hand_their_shard_on), cmocka_unit_test(test_registries_apart),
                cmocka_unit_test(test_registry_full), cmocka_unit_test(test_process_series))
