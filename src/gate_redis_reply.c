#include <errno.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "weir/gate_redis_reply.h"

int weir__gate_redis_parse_ticket(const char *member, const char *s, size_t len, uint64_t *ticket)
{
    size_t idlen = strlen(member);
    uint64_t v = 0;

    /* Exactly as ticket_str writes it: no leading zero (nor 0, never given), no more than UINT64_MAX; anything else
     * would name another key at Redis than the ticket it parses to. */
    if (len <= idlen + 1 || memcmp(s, member, idlen) != 0 || s[idlen] != '#' || s[idlen + 1] == '0')
        return -1;
    for (size_t i = idlen + 1; i != len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t digit = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *ticket = v;
    return 0;
}

int weir__gate_redis_acquire_reply(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_INTEGER || (reply->integer != 0 && reply->integer != 1))
        return -EPROTO;
    return (int)reply->integer;
}

/* An array of strings (the script's tables of tickets; an empty one included). */
static int is_string_array(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i != reply->elements; ++i)
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            return 0;
    return 1;
}

int weir__gate_redis_tick_reply(const redisReply *reply, weir__gate_redis_tick_t *out)
{
    const redisReply *epoch;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return -EPROTO;
    epoch = reply->element[0];
    /* The gate keeps the epoch as a C string and compares it with the next: an empty one would read as "none yet", a
     * longer or a NUL-holding one as a change at every tick. */
    if (epoch->type != REDIS_REPLY_STRING || epoch->len == 0 || epoch->len > WEIR__GATE_REDIS_EPOCH_MAX ||
        memchr(epoch->str, '\0', epoch->len) != NULL)
        return -EPROTO;
    if (!is_string_array(reply->element[1]) || !is_string_array(reply->element[2]))
        return -EPROTO;
    *out = (weir__gate_redis_tick_t){
        .epoch = epoch->str, .epoch_len = epoch->len, .lost = reply->element[1], .missed = reply->element[2]};
    return 0;
}
