#include <errno.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "weir/gate_redis_reply.h"

int weir__gate_redis_parse_ticket(const char *member, const char *s, size_t len, uint64_t *ticket)
{
    size_t idlen = strlen(member);
    uint64_t v = 0;

    if (len <= idlen + 1 || memcmp(s, member, idlen) != 0 || s[idlen] != '#')
        return -1;
    for (size_t i = idlen + 1; i != len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *ticket = v;
    return 0;
}

int weir__gate_redis_acquire_reply(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_INTEGER)
        return -EPROTO;
    return reply->integer == 1;
}

int weir__gate_redis_tick_reply(const redisReply *reply, weir__gate_redis_tick_t *out)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING)
        return -EPROTO;
    *out = (weir__gate_redis_tick_t){.epoch = reply->element[0]->str,
                                     .epoch_len = reply->element[0]->len,
                                     .lost = reply->element[1]->type == REDIS_REPLY_ARRAY ? reply->element[1] : NULL,
                                     .missed = reply->element[2]->type == REDIS_REPLY_ARRAY ? reply->element[2] : NULL};
    return 0;
}
