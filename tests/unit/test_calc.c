#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include "unit.h"
#include <pthread.h>
#include <time.h>
#include "weir/calc.h"

/* Reference values printed by Python: sum(i*i for i in range(n)). */
static const struct {
    uint64_t n;
    const char *sum;
} KNOWN[] = {
    {0, "0"},
    {1, "0"},
    {2, "1"},
    {3, "5"},
    {10, "285"},
    {1000, "332833500"},
    {1000000, "333332833333500000"},
    {3000000, "8999995500000500000"},
    {3810778, "18446735571075162805"}, /* the last n whose sum fits in 64 bits */
    {3810779, "18446750093104128089"}, /* the first n whose sum does not */
    {5000000, "41666654166667500000"},
    {100000000, "333333328333333350000000"},
};

static void test_sum_known_values(void **state)
{
    char buf[48];
    for (size_t i = 0; i < sizeof(KNOWN) / sizeof(KNOWN[0]); ++i) {
        weir_u128_to_str(weir_calc_sum_squares(KNOWN[i].n, NULL), buf);
        assert_string_equal(buf, KNOWN[i].sum);
    }
}

static void test_sum_matches_closed_form(void **state)
{
    /* Checked against (n-1)n(2n-1)/6 in 128 bits, for n around the 64-bit carry. */
    for (uint64_t n = 3810700; n < 3810900; n += 37) {
        unsigned __int128 m = n;
        unsigned __int128 expected = (m - 1) * m * (2 * m - 1) / 6;
        assert_true(weir_calc_sum_squares(n, NULL) == expected);
    }
}

static void test_u128_to_str(void **state)
{
    char buf[48];
    assert_int_equal(weir_u128_to_str(0, buf), 1);
    assert_string_equal(buf, "0");
    assert_int_equal(weir_u128_to_str(7, buf), 1);
    assert_string_equal(buf, "7");
    weir_u128_to_str(UINT64_MAX, buf);
    assert_string_equal(buf, "18446744073709551615");
    weir_u128_to_str((unsigned __int128)UINT64_MAX + 1, buf);
    assert_string_equal(buf, "18446744073709551616");
    unsigned __int128 max = ~(unsigned __int128)0;
    assert_int_equal(weir_u128_to_str(max, buf), 39);
    assert_string_equal(buf, "340282366920938463463374607431768211455");
}

/* At the limit the sum stays below 2^128: (n-1)n(2n-1)/6 < n^3/3 < 2^127 for n = 2^32; and every square (i < n)
 * fits in 64 bits. Checked by the compiler: these are constants. */
_Static_assert((unsigned __int128)WEIR_CALC_N_LIMIT *WEIR_CALC_N_LIMIT *WEIR_CALC_N_LIMIT / 3 < ((unsigned __int128)1 << 127),
               "the sum at the limit fits in 128 bits");
_Static_assert((WEIR_CALC_N_LIMIT - 1) <= UINT64_MAX / (WEIR_CALC_N_LIMIT - 1), "the largest square fits in 64 bits");

static void *set_flag_later(void *flag)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    __atomic_store_n((int *)flag, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* A sum whose flag is set stops: a set flag stops it at the first check, a flag set while it runs soon after (the
 * full sum of 2^32 squares takes seconds; this one is told to stop after 20 ms, and its partial sum shows that it
 * did not run to the end). */
static void test_sum_cancelled(void **state)
{
    int flag = 1;
    unsigned __int128 partial = weir_calc_sum_squares(WEIR_CALC_N_LIMIT, &flag);
    assert_true(partial < weir_calc_sum_squares(100000, NULL)); /* stopped within the first block */
    flag = 0;
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, set_flag_later, &flag), 0);
    partial = weir_calc_sum_squares(WEIR_CALC_N_LIMIT, &flag);
    assert_int_equal(pthread_join(tid, NULL), 0);
    unsigned __int128 n = WEIR_CALC_N_LIMIT, full = (n - 1) * n * (2 * n - 1) / 6;
    assert_true(partial < full);
    /* an unset flag changes nothing */
    flag = 0;
    assert_true(weir_calc_sum_squares(3810779, &flag) == weir_calc_sum_squares(3810779, NULL));
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_sum_known_values), cmocka_unit_test(test_sum_matches_closed_form),
                cmocka_unit_test(test_u128_to_str), cmocka_unit_test(test_sum_cancelled))
