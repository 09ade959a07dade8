/*
 * JSON string quoting, differentially: for valid UTF-8, weir_json_quote writes exactly what yajl_gen_string writes
 * (weir skips yajl for strings that need no escape, and must not differ from it); it answers -EILSEQ exactly when
 * weir_utf8_is_valid says the input is not UTF-8, and writes nothing then. An input that starts with three 0x7f bytes
 * is also quoted repeated to LARGE bytes: when what is repeated needs escapes, yajl's output passes 64 KiB, beyond
 * which weir gives the generator's grown buffer back (and makes a new generator for the next string).
 */
#include <errno.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include "fuzz.h"
#include "weir/respond.h"

/* 11000 control characters, each written as a 6-byte escape, are 66000 bytes */
#define LARGE 11000

static yajl_gen gen;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    gen = yajl_gen_alloc(NULL);
    return 0;
}

static void check(h2o_mem_pool_t *pool, const char *s, size_t len)
{
    h2o_iovec_t out = {(char *)"untouched", 9};
    const unsigned char *want;
    size_t want_len;
    int r = weir_json_quote(pool, s, len, &out);

    if (!weir_utf8_is_valid(s, len)) {
        FUZZ_CHECK(r == -EILSEQ);
        FUZZ_CHECK(out.len == 9 && memcmp(out.base, "untouched", 9) == 0);
        return;
    }
    FUZZ_CHECK(r == 0);
    yajl_gen_reset(gen, NULL);
    yajl_gen_clear(gen);
    FUZZ_CHECK(yajl_gen_string(gen, (const unsigned char *)s, len) == yajl_gen_status_ok);
    yajl_gen_get_buf(gen, &want, &want_len);
    FUZZ_CHECK(out.len == want_len && memcmp(out.base, want, want_len) == 0);
    FUZZ_CHECK(out.base[out.len] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    h2o_mem_pool_t pool;

    h2o_mem_init_pool(&pool);
    check(&pool, (const char *)data, size);
    if (size >= 4 && data[0] == 0x7f && data[1] == 0x7f && data[2] == 0x7f) {
        const uint8_t *unit = data + 3;
        size_t unit_len = size - 3, reps = LARGE / unit_len + 1, len = reps * unit_len;
        char *big = malloc(len);
        for (size_t i = 0; i != reps; ++i)
            memcpy(big + i * unit_len, unit, unit_len);
        check(&pool, big, len);
        /* and a short one after it, on the generator weir has to make anew */
        check(&pool, (const char *)unit, unit_len);
        free(big);
    }
    h2o_mem_clear_pool(&pool);
    return 0;
}
