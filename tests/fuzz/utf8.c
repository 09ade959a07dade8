/*
 * UTF-8 validation (weir_utf8_is_valid), against a reference written from the table of well-formed byte sequences in
 * the Unicode standard (chapter 3, table 3-7), at every alignment of the input (the validator reads ASCII eight bytes
 * at a time), and on the last prefixes of a valid input: valid when they end between two characters, not otherwise.
 */
#include <string.h>
#include "fuzz.h"
#include "weir/text.h"

/* The length of the well-formed sequence at s (n bytes left), or 0 when it is ill-formed. */
static size_t ref_sequence(const unsigned char *s, size_t n)
{
    /* first byte, then the allowed range of the second; later bytes are always 80..BF */
    static const struct {
        unsigned char lo, hi, len, lo2, hi2;
    } TABLE[] = {
        {0x00, 0x7f, 1, 0, 0},       {0xc2, 0xdf, 2, 0x80, 0xbf}, {0xe0, 0xe0, 3, 0xa0, 0xbf},
        {0xe1, 0xec, 3, 0x80, 0xbf}, {0xed, 0xed, 3, 0x80, 0x9f}, {0xee, 0xef, 3, 0x80, 0xbf},
        {0xf0, 0xf0, 4, 0x90, 0xbf}, {0xf1, 0xf3, 4, 0x80, 0xbf}, {0xf4, 0xf4, 4, 0x80, 0x8f},
    };
    for (size_t i = 0; i != sizeof(TABLE) / sizeof(TABLE[0]); ++i) {
        if (s[0] < TABLE[i].lo || s[0] > TABLE[i].hi)
            continue;
        size_t len = TABLE[i].len;
        if (n < len)
            return 0;
        if (len >= 2 && (s[1] < TABLE[i].lo2 || s[1] > TABLE[i].hi2))
            return 0;
        for (size_t k = 2; k < len; ++k)
            if (s[k] < 0x80 || s[k] > 0xbf)
                return 0;
        return len;
    }
    return 0;
}

static int ref_valid(const unsigned char *s, size_t n)
{
    while (n != 0) {
        size_t len = ref_sequence(s, n);
        if (len == 0)
            return 0;
        s += len;
        n -= len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int valid = ref_valid(data, size);

    FUZZ_CHECK(!!weir_utf8_is_valid((const char *)data, size) == valid);
    /* the same bytes at every offset from an 8-byte boundary, each time in a buffer that ends where they end */
    for (size_t off = 1; off < 8; ++off) {
        unsigned char *buf = malloc(off + size);
        memcpy(buf + off, data, size);
        FUZZ_CHECK(!!weir_utf8_is_valid((const char *)buf + off, size) == valid);
        free(buf);
    }
    if (valid) {
        /* cut inside the last characters: valid exactly where the cut falls between two of them */
        for (size_t i = size > 12 ? size - 12 : 0; i < size; ++i) {
            int boundary = (data[i] & 0xc0) != 0x80;
            FUZZ_CHECK(!!weir_utf8_is_valid((const char *)data, i) == boundary);
        }
    }
    return 0;
}
