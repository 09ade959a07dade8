#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include "unit.h"
#include "weir/text.h"

static h2o_mem_pool_t pool;

static int setup(void **state)
{
    h2o_mem_init_pool(&pool);
    return 0;
}

static int teardown(void **state)
{
    h2o_mem_clear_pool(&pool);
    return 0;
}

static void assert_found(const char *query, const char *name, const char *expected, size_t expected_len)
{
    h2o_iovec_t v;
    assert_int_equal(weir_query_find(&pool, query, strlen(query), name, &v), 0);
    assert_int_equal(v.len, expected_len);
    assert_memory_equal(v.base, expected, expected_len);
    assert_int_equal(v.base[v.len], '\0');
}

static void test_query_simple(void **state)
{
    assert_found("key=abc", "key", "abc", 3);
    assert_found("a=1&key=xyz&b=2", "key", "xyz", 3);
    assert_found("a=1&b=2", "b", "2", 1);
}

static void test_query_percent_and_plus(void **state)
{
    assert_found("key=a%20b", "key", "a b", 3);
    assert_found("key=a+b", "key", "a b", 3);
    assert_found("key=%2B%26%3D", "key", "+&=", 3);
    assert_found("key=%e2%82%ac", "key", "\xe2\x82\xac", 3);
    assert_found("key=%00x", "key", "\0x", 2);
    assert_found("k%65y=v", "key", "v", 1); /* names are compared decoded */
}

static void test_query_repeated_and_empty(void **state)
{
    h2o_iovec_t v;
    /* a repeated parameter is refused, whichever way it is spelt; other names may repeat */
    assert_int_equal(weir_query_find(&pool, "key=1&key=2", 11, "key", &v), -EEXIST);
    assert_int_equal(weir_query_find(&pool, "key=1&k%65y=1", 13, "key", &v), -EEXIST);
    assert_int_equal(weir_query_find(&pool, "key&key", 7, "key", &v), -EEXIST);
    assert_found("a=1&a=2&key=v", "key", "v", 1);
    assert_found("key=", "key", "", 0);
    assert_found("key", "key", "", 0);
    assert_found("&&key=v&&", "key", "v", 1);
}

static void test_query_absent(void **state)
{
    h2o_iovec_t v;
    assert_int_equal(weir_query_find(&pool, "", 0, "key", &v), -ENOENT);
    assert_int_equal(weir_query_find(&pool, "keys=1&ke=2", 11, "key", &v), -ENOENT);
    assert_int_equal(weir_query_find(&pool, "a=key", 5, "key", &v), -ENOENT);
}

static void test_query_malformed(void **state)
{
    h2o_iovec_t v;
    assert_int_equal(weir_query_find(&pool, "key=%", 5, "key", &v), -EINVAL);
    assert_int_equal(weir_query_find(&pool, "key=%4", 6, "key", &v), -EINVAL);
    assert_int_equal(weir_query_find(&pool, "key=%zz", 7, "key", &v), -EINVAL);
    /* a malformed escape elsewhere in the query is reported too */
    assert_int_equal(weir_query_find(&pool, "key=1&x=%g0", 11, "key", &v), -EINVAL);
    assert_int_equal(weir_query_find(&pool, "%=1&key=2", 9, "key", &v), -EINVAL);
}

static void test_percent_decode(void **state)
{
    char out[32];
    assert_int_equal(weir_percent_decode("a%41+b", 6, out, 0), 4);
    assert_memory_equal(out, "aA+b", 4);
    assert_int_equal(weir_percent_decode("a%41+b", 6, out, 1), 4);
    assert_memory_equal(out, "aA b", 4);
    assert_int_equal(weir_percent_decode("%41%", 4, out, 0), -EINVAL);
    assert_int_equal(weir_percent_decode("", 0, out, 0), 0);
}

static void test_utf8_validation(void **state)
{
    assert_true(weir_utf8_is_valid("", 0));
    assert_true(weir_utf8_is_valid("ascii", 5));
    assert_true(weir_utf8_is_valid("\xc3\xa9", 2));          /* U+00E9 */
    assert_true(weir_utf8_is_valid("\xef\xbf\xbf", 3));      /* U+FFFF */
    assert_true(weir_utf8_is_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    assert_false(weir_utf8_is_valid("\xc0\x80", 2));         /* overlong NUL */
    assert_false(weir_utf8_is_valid("\xe0\x80\xaf", 3));     /* overlong '/' */
    assert_false(weir_utf8_is_valid("\xed\xa0\x80", 3));     /* surrogate U+D800 */
    assert_false(weir_utf8_is_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(weir_utf8_is_valid("\xe2\x82", 2));         /* truncated */
    assert_false(weir_utf8_is_valid("\x80", 1));             /* lone continuation */
    assert_false(weir_utf8_is_valid("\xf8\x88\x80\x80\x80", 5));
    assert_false(weir_utf8_is_valid("a\xc3(", 3));
}

static void test_decimal(void **state)
{
    uint64_t v = 7;
    assert_int_equal(weir_parse_decimal("0", 1, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(weir_parse_decimal("0010", 4, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(weir_parse_decimal("11", 2, 10, &v), -ERANGE);
    assert_int_equal(weir_parse_decimal("18446744073709551615", 20, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(weir_parse_decimal("18446744073709551616", 20, UINT64_MAX, &v), -ERANGE);
    assert_int_equal(weir_parse_decimal("99999999999999999999999", 23, UINT64_MAX, &v), -ERANGE);
    assert_int_equal(weir_parse_decimal("4294967296", 10, UINT64_C(4294967296), &v), 0);
    assert_int_equal(weir_parse_decimal("4294967297", 10, UINT64_C(4294967296), &v), -ERANGE);
    v = 7;
    assert_int_equal(weir_parse_decimal("", 0, 10, &v), -EINVAL);
    assert_int_equal(weir_parse_decimal("-1", 2, 10, &v), -EINVAL);
    assert_int_equal(weir_parse_decimal("+1", 2, 10, &v), -EINVAL);
    assert_int_equal(weir_parse_decimal("1 ", 2, 10, &v), -EINVAL);
    assert_int_equal(weir_parse_decimal("1x", 2, 10, &v), -EINVAL);
    assert_int_equal(weir_parse_decimal("1\0", 2, 10, &v), -EINVAL);
    assert_int_equal(v, 7); /* nothing set on failure */
    /* the length bounds the digits read */
    assert_int_equal(weir_parse_decimal("123", 2, 1000, &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(weir_parse_decimal_prefix("12k", 3, 100, &v), 2);
    assert_int_equal(v, 12);
    assert_int_equal(weir_parse_decimal_prefix("k", 1, 100, &v), 0);
    assert_int_equal(weir_parse_decimal_prefix("101k", 4, 100, &v), -ERANGE);
}

static void test_hex_encode(void **state)
{
    (void)state;
    char out[9];

    memset(out, 'x', sizeof(out));
    weir_hex_encode("\x00\x0f\xa5\xff", 4, out);
    assert_string_equal(out, "000fa5ff");
    weir_hex_encode("", 0, out);
    assert_string_equal(out, "");
}

WEIR_UNIT_TESTS(cmocka_unit_test_setup_teardown(test_query_simple, setup, teardown),
                cmocka_unit_test_setup_teardown(test_query_percent_and_plus, setup, teardown),
                cmocka_unit_test_setup_teardown(test_query_repeated_and_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_query_absent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_query_malformed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_percent_decode, setup, teardown), cmocka_unit_test(test_utf8_validation),
                cmocka_unit_test(test_decimal), cmocka_unit_test(test_hex_encode))
