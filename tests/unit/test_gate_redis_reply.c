/*
 * The Redis gate's reading of Redis's replies (src/gate_redis_reply.c), without a server: replies are RESP bytes read
 * by hiredis's reader, as weir's connections read them. The accepted ones were captured from redis-server 7.0.15
 * running the gate's scripts; the refused ones are what the scripts never send (each kept by the fuzz target too, as
 * tests/fuzz/corpus/gate_replies/regress-*).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "unit.h"
#include <errno.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "weir/common.h"
#include "weir/gate_redis_reply.h"

#define MEMBER "0123456789abcdef.0"
#define EPOCH "$17\r\n1796152632.700203\r\n"

static redisReply *read_reply(const char *resp, size_t len)
{
    redisReader *reader = redisReaderCreate();
    void *reply = NULL;

    assert_non_null(reader);
    assert_int_equal(redisReaderFeed(reader, resp, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(reader, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(reader);
    return reply;
}

#define READ(lit) read_reply((lit), sizeof(lit) - 1)

static int acquire(const char *resp, size_t len)
{
    redisReply *r = read_reply(resp, len);
    int ret = weir__gate_redis_acquire_reply(r);
    freeReplyObject(r);
    return ret;
}

#define ACQUIRE(lit) acquire((lit), sizeof(lit) - 1)

static int tick(const char *resp, size_t len)
{
    redisReply *r = read_reply(resp, len);
    weir__gate_redis_tick_t t;
    int ret = weir__gate_redis_tick_reply(r, &t);
    freeReplyObject(r);
    return ret;
}

#define TICK(lit) tick((lit), sizeof(lit) - 1)

static int ticket(const char *s, uint64_t *out)
{
    return weir__gate_redis_parse_ticket(MEMBER, s, strlen(s), out);
}

static void test_acquire_replies(void **state)
{
    assert_int_equal(ACQUIRE(":1\r\n"), 1);
    assert_int_equal(ACQUIRE(":0\r\n"), 0);
    assert_int_equal(ACQUIRE("+OK\r\n"), -EPROTO);
    assert_int_equal(ACQUIRE("$1\r\n1\r\n"), -EPROTO);
    assert_int_equal(ACQUIRE("$-1\r\n"), -EPROTO);
    assert_int_equal(ACQUIRE("*1\r\n:1\r\n"), -EPROTO);
}

/* Only 0 and 1: any other integer was taken for "queued", and the upload waited for a grant that would never come. */
static void test_acquire_refuses_other_integers(void **state)
{
    assert_int_equal(ACQUIRE(":2\r\n"), -EPROTO);
    assert_int_equal(ACQUIRE(":-1\r\n"), -EPROTO);
    assert_int_equal(ACQUIRE(":9223372036854775807\r\n"), -EPROTO);
}

static void test_tick_replies(void **state)
{
    static const char missed[] = "*3\r\n" EPOCH "*0\r\n*2\r\n$20\r\n" MEMBER "#1\r\n$20\r\n" MEMBER "#2\r\n";
    redisReply *r = READ(missed);
    weir__gate_redis_tick_t t;

    assert_int_equal(weir__gate_redis_tick_reply(r, &t), 0);
    assert_int_equal(t.epoch_len, 17);
    assert_memory_equal(t.epoch, "1796152632.700203", 17);
    assert_ptr_equal(t.epoch, r->element[0]->str);
    assert_ptr_equal(t.lost, r->element[1]);
    assert_int_equal(t.lost->elements, 0);
    assert_ptr_equal(t.missed, r->element[2]);
    assert_int_equal(t.missed->elements, 2);
    freeReplyObject(r);

    assert_int_equal(TICK("*3\r\n" EPOCH "*0\r\n*0\r\n"), 0);
    assert_int_equal(TICK("*3\r\n" EPOCH "*1\r\n$20\r\n" MEMBER "#7\r\n*0\r\n"), 0);
    /* wrong shapes */
    assert_int_equal(TICK(":1\r\n"), -EPROTO);
    assert_int_equal(TICK("*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*-1\r\n"), -EPROTO);
    assert_int_equal(TICK("*2\r\n" EPOCH "*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*4\r\n" EPOCH "*0\r\n*0\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n:1\r\n*0\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n$-1\r\n*0\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n*1\r\n" EPOCH "*0\r\n*0\r\n"), -EPROTO);
}

/* lost and missed must be arrays of strings: a reply whose lists were something else counted as a successful renewal
 * (the lists ignored), and a nested list's tickets were never read. */
static void test_tick_refuses_malformed_lists(void **state)
{
    assert_int_equal(TICK("*3\r\n" EPOCH ":1\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n" EPOCH "*0\r\n$-1\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n" EPOCH "*-1\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n" EPOCH "$3\r\nabc\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n" EPOCH "*1\r\n:7\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n" EPOCH "*1\r\n$-1\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n" EPOCH "*0\r\n*1\r\n*1\r\n$20\r\n" MEMBER "#1\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n" EPOCH "*1\r\n+" MEMBER "#1\r\n*0\r\n"), -EPROTO);
}

/* The epoch is kept as a C string of at most 63 bytes and compared with the next one: an empty one read as "no epoch
 * yet" (a later FLUSHALL went unnoticed), a longer or NUL-holding one as a change at every tick. */
static void test_tick_refuses_bad_epochs(void **state)
{
    static const char nul[] = "*3\r\n$8\r\n17961\0.7\r\n*0\r\n*0\r\n";

    assert_int_equal(TICK("*3\r\n$0\r\n\r\n*0\r\n*0\r\n"), -EPROTO);
    assert_int_equal(TICK("*3\r\n$64\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n*0\r\n*0\r\n"),
                     -EPROTO);
    assert_int_equal(TICK("*3\r\n$63\r\n012345678901234567890123456789012345678901234567890123456789012\r\n*0\r\n*0\r\n"), 0);
    assert_int_equal(tick(nul, sizeof(nul) - 1), -EPROTO);
    assert_int_equal(TICK("*3\r\n+1796152632.700203\r\n*0\r\n*0\r\n"), -EPROTO);
}

static void test_tickets(void **state)
{
    uint64_t t = 0;

    assert_int_equal(ticket(MEMBER "#1", &t), 0);
    assert_int_equal(t, 1);
    assert_int_equal(ticket(MEMBER "#1234567890", &t), 0);
    assert_int_equal(t, 1234567890);
    assert_int_equal(ticket(MEMBER "#18446744073709551615", &t), 0);
    assert_true(t == UINT64_MAX);
    /* someone else's, or not a ticket */
    assert_int_equal(ticket("0123456789abcdef.1#1", &t), -1);
    assert_int_equal(ticket("0123456789abcdef.#1", &t), -1);
    assert_int_equal(ticket("0123456789abcdef.00#1", &t), -1);
    assert_int_equal(ticket(MEMBER "#", &t), -1);
    assert_int_equal(ticket(MEMBER, &t), -1);
    assert_int_equal(ticket(MEMBER "1", &t), -1);
    assert_int_equal(ticket(MEMBER "#1x", &t), -1);
    assert_int_equal(ticket(MEMBER "#-1", &t), -1);
    assert_int_equal(ticket("", &t), -1);
    assert_int_equal(weir__gate_redis_parse_ticket(MEMBER, NULL, 0, &t), -1); /* an integer element's str */
}

/* A ticket is what the gate writes: a number past 2^64 - 1 wrapped around and named another waiter's ticket (whose
 * holder a tick's "lost" list then revoked); a leading zero named the same ticket as another key at Redis. */
static void test_tickets_refuse_overflow_and_leading_zeros(void **state)
{
    uint64_t t = 42;

    assert_int_equal(ticket(MEMBER "#18446744073709551616", &t), -1); /* 2^64: was 0 */
    assert_int_equal(ticket(MEMBER "#18446744073709551617", &t), -1); /* was 1 */
    assert_int_equal(ticket(MEMBER "#99999999999999999999", &t), -1);
    assert_int_equal(ticket(MEMBER "#01", &t), -1);
    assert_int_equal(ticket(MEMBER "#0", &t), -1);
    assert_int_equal(t, 42); /* nothing set */
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_acquire_replies), cmocka_unit_test(test_acquire_refuses_other_integers),
                cmocka_unit_test(test_tick_replies), cmocka_unit_test(test_tick_refuses_malformed_lists),
                cmocka_unit_test(test_tick_refuses_bad_epochs), cmocka_unit_test(test_tickets),
                cmocka_unit_test(test_tickets_refuse_overflow_and_leading_zeros))
