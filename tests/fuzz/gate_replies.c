/*
 * The Redis gate's reading of Redis's replies (src/gate_redis_reply.c, used by src/gate_redis.c): the acquire and the
 * tick scripts' replies, and the tickets in them and in grant messages. The input is RESP bytes, as Redis sends them;
 * hiredis's reader (the one weir's connections use) turns them into reply trees, and every reply it reads is given to
 * each parser. Inputs announcing an array of more than 4096 elements are skipped: hiredis allocates the array when
 * it reads the count, before any element arrives (a limit of the reader, which trusts its server, not of the gate).
 *
 * Properties, beyond crashes and sanitizer reports (the reader allocates each string and each element array to its
 * exact size, so a read past an element or a string is reported):
 * - the acquire reply is accepted exactly when it is the integer 0 or 1 (what the script returns), refused with
 *   -EPROTO otherwise;
 * - the tick reply is accepted exactly when it is {epoch, lost, missed}: an array of three, the epoch a string of 1 to
 *   63 bytes without NUL (the gate keeps it as a C string and sends it back), lost and missed arrays of strings (what
 *   the script returns, empty tables included); refused with -EPROTO otherwise, nested or missing parts included;
 *   accepted, it points into the reply;
 * - a ticket is parsed exactly when it is "<member>#<n>" with n written as weir writes it (1 to 2^64 - 1, no leading
 *   zero), and writing the ticket back gives the same bytes; every string of every reply is tried as a ticket, for a
 *   member id as the gate makes them, and for a second one that is the first's prefix.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "fuzz.h"
#include "weir/gate_redis_reply.h"

#define MEMBER "0123456789abcdef.0"
#define MEMBER_PREFIX "0123456789abcdef."
#define MAX_ARRAY 4096
#define MAX_REPLIES 64

static int is_string(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING;
}

static int ref_acquire(const redisReply *r)
{
    if (r->type != REDIS_REPLY_INTEGER || (r->integer != 0 && r->integer != 1))
        return -EPROTO;
    return (int)r->integer;
}

static int ref_string_list(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i != r->elements; ++i)
        if (!is_string(r->element[i]))
            return 0;
    return 1;
}

static int ref_tick(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return 0;
    const redisReply *epoch = r->element[0];
    return is_string(epoch) && epoch->len >= 1 && epoch->len <= 63 && memchr(epoch->str, '\0', epoch->len) == NULL &&
           ref_string_list(r->element[1]) && ref_string_list(r->element[2]);
}

/* "<member>#<n>", n in 1..2^64-1 without a leading zero; 1 with *out set. */
static int ref_ticket(const char *member, const char *s, size_t len, uint64_t *out)
{
    size_t m = strlen(member), i;
    unsigned __int128 v = 0;

    if (len < m + 2 || memcmp(s, member, m) != 0 || s[m] != '#' || s[m + 1] == '0')
        return 0;
    for (i = m + 1; i != len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > UINT64_MAX)
            return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

static void check_ticket(const char *member, const char *s, size_t len)
{
    uint64_t got = 0, want = 0;
    int r = weir__gate_redis_parse_ticket(member, s, len, &got);
    int ok = ref_ticket(member, s, len, &want);

    FUZZ_CHECK(r == 0 || r == -1);
    FUZZ_CHECK((r == 0) == ok);
    if (r == 0) {
        char back[128];
        int n = snprintf(back, sizeof(back), "%s#%" PRIu64, member, got);
        FUZZ_CHECK(got == want && (size_t)n == len && memcmp(back, s, len) == 0);
    }
}

/* Every string of the tree, as a ticket. */
static void check_strings(const redisReply *r, int depth)
{
    FUZZ_CHECK(depth < 16);
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        check_ticket(MEMBER, r->str, r->len);
        check_ticket(MEMBER_PREFIX, r->str, r->len);
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i != r->elements; ++i)
            check_strings(r->element[i], depth + 1);
        break;
    default:
        break;
    }
}

static void check_reply(const redisReply *r)
{
    int a = weir__gate_redis_acquire_reply(r);
    FUZZ_CHECK(a == ref_acquire(r));

    weir__gate_redis_tick_t t;
    memset(&t, 0xa5, sizeof(t));
    int k = weir__gate_redis_tick_reply(r, &t);
    FUZZ_CHECK(k == 0 || k == -EPROTO);
    FUZZ_CHECK((k == 0) == ref_tick(r));
    if (k == 0) {
        FUZZ_CHECK(t.epoch == r->element[0]->str && t.epoch_len == r->element[0]->len);
        FUZZ_CHECK(t.lost == r->element[1] && t.missed == r->element[2]);
        /* what the gate then reads */
        const redisReply *lists[] = {t.lost, t.missed};
        for (size_t l = 0; l != 2; ++l)
            for (size_t i = 0; i != lists[l]->elements; ++i) {
                uint64_t ticket;
                (void)weir__gate_redis_parse_ticket(MEMBER, lists[l]->element[i]->str, lists[l]->element[i]->len, &ticket);
            }
    }
    check_strings(r, 0);
}

/* True when the input announces an array larger than MAX_ARRAY ("*" then digits, anywhere). */
static int has_huge_array(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; ++i) {
        if (data[i] != '*')
            continue;
        size_t k = i + 1;
        uint64_t v = 0;
        if (k < size && data[k] == '-')
            ++k;
        for (; k < size && data[k] >= '0' && data[k] <= '9'; ++k)
            if ((v = v * 10 + (data[k] - '0')) > MAX_ARRAY)
                return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (has_huge_array(data, size))
        return 0;
    redisReader *reader = redisReaderCreate();
    FUZZ_CHECK(reader != NULL);
    FUZZ_CHECK(redisReaderFeed(reader, (const char *)data, size) == REDIS_OK);
    for (int n = 0; n != MAX_REPLIES; ++n) {
        void *reply = NULL;
        if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == NULL)
            break;
        check_reply(reply);
        freeReplyObject(reply);
    }
    redisReaderFree(reader);
    return 0;
}
