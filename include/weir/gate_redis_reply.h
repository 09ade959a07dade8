/**
 * @file gate_redis_reply.h
 * What the Redis gate (src/gate_redis.c) reads from Redis, apart from the gate so that the unit tests and the fuzz
 * target check it without a server: the replies of its acquire and tick scripts, and its tickets ("<member>#<n>")
 * found in them and in grant messages. Internal to weir (hence the weir__ names); pure functions of the reply, no
 * state, no allocation. A reply is checked whole before the gate acts on any part of it.
 */
#ifndef WEIR_GATE_REDIS_REPLY_H
#define WEIR_GATE_REDIS_REPLY_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;

/** Longest epoch (bytes): the tick script's is "<seconds>.<microseconds>" of Redis's clock, 17 bytes for centuries. */
#define WEIR__GATE_REDIS_EPOCH_MAX 63

/** The tick script's reply, {epoch, lost, missed}, as weir__gate_redis_tick_reply found it. */
typedef struct st_weir__gate_redis_tick_t {
    /** The epoch string (points into the reply): 1 to WEIR__GATE_REDIS_EPOCH_MAX bytes, no NUL. */
    const char *epoch;
    size_t epoch_len;
    /** The lost and the missed tickets: array replies (possibly empty) whose elements are all strings. */
    const struct redisReply *lost, *missed;
} weir__gate_redis_tick_t;

/**
 * Parses @p len bytes of @p s as a ticket of @p member (NUL-terminated): "<member>#<n>", n written as the gate writes
 * it (1 to UINT64_MAX, no leading zero).
 * @return 0 with @p ticket set, or -1 when it is not one of the member's tickets (someone else's, or malformed).
 */
int weir__gate_redis_parse_ticket(const char *member, const char *s, size_t len, uint64_t *ticket);

/**
 * Reads the acquire script's reply: the integer 1 or 0.
 * @return 1 (held), 0 (queued), or -EPROTO when @p reply is anything else (another type, another integer).
 */
int weir__gate_redis_acquire_reply(const struct redisReply *reply);

/**
 * Reads the tick script's reply into @p out: an array of exactly {epoch string, array of lost tickets, array of missed
 * tickets}, ticket arrays holding strings only.
 * @return 0, or -EPROTO when @p reply is anything else, a nested or a missing part included (then @p out is not set).
 */
int weir__gate_redis_tick_reply(const struct redisReply *reply, weir__gate_redis_tick_t *out);

#endif
