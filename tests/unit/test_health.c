#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "unit.h"
#include "weir/health.h"

static int read_flag(void *data)
{
    return __atomic_load_n((int *)data, __ATOMIC_RELAXED);
}

static void test_empty_is_up(void **state)
{
    weir_health_status_t *st;
    int all_up = 0;

    assert_int_equal(weir_health_evaluate(&st, &all_up), 0);
    assert_int_equal(all_up, 1);
    weir_health_free(st, 0);
}

static void test_grouped_by_name(void **state)
{
    int t1 = 1, t2 = 1, other = 1;
    weir_health_check_t *a1 = weir_health_add("cache /cache: redis", read_flag, &t1);
    weir_health_check_t *b = weir_health_add("gate /upload: redis", read_flag, &other);
    weir_health_check_t *a2 = weir_health_add("cache /cache: redis", read_flag, &t2);
    weir_health_status_t *st;
    int all_up;

    /* one dependency per name, in the order the names came; up only when every check of it is */
    size_t n = weir_health_evaluate(&st, &all_up);
    assert_int_equal(n, 2);
    assert_int_equal(all_up, 1);
    assert_string_equal(st[0].name, "cache /cache: redis");
    assert_int_equal(st[0].up, 2);
    assert_int_equal(st[0].total, 2);
    assert_string_equal(st[1].name, "gate /upload: redis");
    weir_health_free(st, n);

    t2 = 0;
    n = weir_health_evaluate(&st, &all_up);
    assert_int_equal(all_up, 0);
    assert_int_equal(st[0].up, 1);
    assert_int_equal(st[0].total, 2);
    assert_int_equal(st[1].up, 1);
    weir_health_free(st, n);

    /* a thread that stops takes its check away */
    weir_health_remove(a2);
    n = weir_health_evaluate(&st, &all_up);
    assert_int_equal(all_up, 1);
    assert_int_equal(st[0].total, 1);
    weir_health_free(st, n);

    weir_health_remove(a1);
    weir_health_remove(b);
    weir_health_remove(NULL);
    n = weir_health_evaluate(&st, &all_up);
    assert_int_equal(n, 0);
    weir_health_free(st, n);
    /* added again after all were removed (the list's end is kept right) */
    weir_health_check_t *c = weir_health_add("again", read_flag, &t1);
    n = weir_health_evaluate(&st, &all_up);
    assert_int_equal(n, 1);
    assert_string_equal(st[0].name, "again");
    weir_health_free(st, n);
    weir_health_remove(c);
}

typedef struct st_churn_t {
    int stop;
    int flag;
} churn_t;

static void *add_and_remove(void *_c)
{
    churn_t *c = _c;
    while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
        weir_health_check_t *check = weir_health_add("churn", read_flag, &c->flag);
        weir_health_remove(check);
    }
    return NULL;
}

static void test_concurrent_add_remove_evaluate(void **state)
{
    churn_t c = {0, 1};
    pthread_t tids[3];

    for (int i = 0; i != 3; ++i)
        assert_int_equal(pthread_create(tids + i, NULL, add_and_remove, &c), 0);
    for (int i = 0; i != 2000; ++i) {
        weir_health_status_t *st;
        int all_up;
        size_t n = weir_health_evaluate(&st, &all_up);
        assert_true(n <= 1);
        assert_int_equal(all_up, 1);
        weir_health_free(st, n);
    }
    __atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i != 3; ++i)
        pthread_join(tids[i], NULL);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_empty_is_up), cmocka_unit_test(test_grouped_by_name),
                cmocka_unit_test(test_concurrent_add_remove_evaluate))
