#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include "unit.h"
#include <yajl/yajl_gen.h>
#include "weir/respond.h"

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

static void test_json_quote(void **state)
{
    h2o_iovec_t out;
    assert_int_equal(weir_json_quote(&pool, "plain", 5, &out), 0);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.base, "\"plain\"", 7);
    assert_int_equal(weir_json_quote(&pool, "q\"\\\n\x01", 5, &out), 0);
    assert_string_equal(out.base, "\"q\\\"\\\\\\n\\u0001\"");
    assert_int_equal(weir_json_quote(&pool, "\xe2\x82\xac", 3, &out), 0);
    assert_int_equal(weir_json_quote(&pool, "", 0, &out), 0);
    assert_string_equal(out.base, "\"\"");
}

/* Strings that need no escape are quoted without yajl: the result must be what yajl writes, for every ASCII byte
 * (as a whole string and inside one) and for multi-byte characters. */
static void test_json_quote_matches_yajl(void **state)
{
    yajl_gen gen = yajl_gen_alloc(NULL);
    char s[8];
    const unsigned char *expected;
    size_t expected_len;
    h2o_iovec_t out;

    for (int c = 0; c < 0x80 + 3; ++c) {
        size_t len;
        if (c < 0x80) {
            s[0] = 'a';
            s[1] = (char)c;
            s[2] = 'z';
            len = 3;
        } else {
            static const char *const MB[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
            len = strlen(MB[c - 0x80]);
            memcpy(s, MB[c - 0x80], len);
        }
        yajl_gen_reset(gen, NULL);
        yajl_gen_clear(gen);
        assert_int_equal(yajl_gen_string(gen, (const unsigned char *)s, len), yajl_gen_status_ok);
        yajl_gen_get_buf(gen, &expected, &expected_len);
        assert_int_equal(weir_json_quote(&pool, s, len, &out), 0);
        assert_int_equal(out.len, expected_len);
        assert_memory_equal(out.base, expected, expected_len);
        assert_int_equal(out.base[out.len], '\0');
    }
    yajl_gen_free(gen);
}

static void test_json_quote_rejects_invalid_utf8(void **state)
{
    h2o_iovec_t out;
    assert_int_equal(weir_json_quote(&pool, "\xff", 1, &out), -EILSEQ);
    assert_int_equal(weir_json_quote(&pool, "ab\xe2\x82", 4, &out), -EILSEQ);
    assert_int_equal(weir_json_quote(&pool, "\xc0\xaf", 2, &out), -EILSEQ);
}

WEIR_UNIT_TESTS(cmocka_unit_test_setup_teardown(test_json_quote, setup, teardown),
                cmocka_unit_test_setup_teardown(test_json_quote_matches_yajl, setup, teardown),
                cmocka_unit_test_setup_teardown(test_json_quote_rejects_invalid_utf8, setup, teardown))
