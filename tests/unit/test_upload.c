#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include "unit.h"
#include "weir/upload.h"

static void test_delay_within_bounds(void **state)
{
    uint64_t rng = 12345;
    for (int i = 0; i < 100000; ++i) {
        uint32_t d = weir_upload_draw_delay(&rng, 100, 200);
        assert_in_range(d, 100, 200);
    }
}

static void test_delay_fixed(void **state)
{
    uint64_t rng = 99;
    for (int i = 0; i < 1000; ++i)
        assert_int_equal(weir_upload_draw_delay(&rng, 150, 150), 150);
    assert_int_equal(weir_upload_draw_delay(&rng, 0, 0), 0);
}

static void test_delay_uniform(void **state)
{
    /* 101 values, 202000 draws: about 2000 each. A chi-square over 100 degrees of freedom above 180 happens
     * with probability < 1e-6 for a uniform source, and is certain for a biased or stuck one. */
    uint64_t rng = 0x9e3779b97f4a7c15;
    unsigned counts[101] = {0};
    const int draws = 202000;
    for (int i = 0; i < draws; ++i)
        ++counts[weir_upload_draw_delay(&rng, 100, 200) - 100];
    double expected = draws / 101.0, chi2 = 0;
    for (int i = 0; i < 101; ++i) {
        assert_true(counts[i] > 0); /* both ends included */
        chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    assert_true(chi2 < 180);
}

static void test_delay_full_range(void **state)
{
    uint64_t rng = 7;
    int saw_high = 0;
    for (int i = 0; i < 1000; ++i)
        if (weir_upload_draw_delay(&rng, 0, UINT32_MAX) > UINT32_MAX / 2)
            saw_high = 1;
    assert_true(saw_high);
}

static void test_register_rejects_bad_settings(void **state)
{
    h2o_globalconf_t config;
    h2o_config_init(&config);
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/upload", 0);
    weir_upload_settings_t s;
    weir_upload_settings_init(&s);
    assert_int_equal(s.concurrency, 5);
    assert_int_equal(s.delay_min_ms, 100);
    assert_int_equal(s.delay_max_ms, 200);
    assert_int_equal(s.max_queue, 1000);
    assert_int_equal(s.queue_timeout_ms, 30000);
    s.max_queue = 0;
    assert_int_equal(weir_upload_register(path, &s), -EINVAL);
    s.max_queue = 1000;
    s.queue_timeout_ms = 0;
    assert_int_equal(weir_upload_register(path, &s), -EINVAL);
    s.queue_timeout_ms = 30000;
    s.delay_min_ms = 300;
    assert_int_equal(weir_upload_register(path, &s), -EINVAL);
    s.delay_min_ms = 100;
    s.concurrency = 0;
    assert_int_equal(weir_upload_register(path, &s), -EINVAL);
    s.concurrency = 5;
    assert_int_equal(weir_upload_register(path, &s), 0);
    h2o_config_dispose(&config);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_delay_within_bounds), cmocka_unit_test(test_delay_fixed),
                cmocka_unit_test(test_delay_uniform), cmocka_unit_test(test_delay_full_range),
                cmocka_unit_test(test_register_rejects_bad_settings))
