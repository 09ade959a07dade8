/*
 * The Redis gate (see gate.h): one upload limit shared by every weir instance that uses the same name N on one Redis
 * server. Redis is the judge: every decision is an atomic Lua script that reads Redis's own clock (TIME), so nothing
 * assumes anything about the instances' clocks.
 *
 * Members. Each worker thread of each instance is a member of the gate, with its own id ("<instance>.<thread>", the
 * instance part random per process), its own command connection (one, so that its commands reach Redis in the order
 * they were given) and its own subscriber connection. Tickets are "<member>#<n>", n counting up per member.
 *
 * Keys under N:
 *   N:seq            INCR counter giving queued tickets their place in arrival order at Redis
 *   N:queue          ZSET ticket -> seq: the waiters of every member, in the order they reached Redis
 *   N:holders        ZSET ticket -> expiry (ms of Redis's clock): the slots held; never more than the capacity is granted
 *   N:held:<member>  SET of the member's tickets in N:holders (to renew and report them without scanning N:holders)
 *   N:q:<member>     SET of the member's tickets in N:queue (to drop them when the member leaves)
 *   N:inst:<member>  the member's liveness key, PX lease, renewed by the member's tick
 *   N:epoch          created with the server's time by the first tick that misses it: a change means Redis lost its
 *                    data (FLUSHALL, or a restart without persistence)
 *   channel N:grant:<member>  a grant is published there as the ticket
 *
 * Scripts (each starts with redis.replicate_commands(), which Redis 3.2-4 need before a write that follows TIME and
 * 5 and later accept as a no-op; they use only commands of Redis <= 2.8 and no Redis 7 options):
 *   acquire(ticket)  drop expired holders, grant queue heads into free slots (dropping heads whose member's liveness key
 *                    is gone), then hold the newcomer at once if a slot is free and nobody is queued, else enqueue it;
 *                    returns 1 (held) or 0 (queued). Idempotent: a ticket already held or queued keeps its place.
 *   release(ticket)  remove the ticket from the holders or the queue, then grant queue heads into free slots, publishing
 *                    each grant to its member's channel.
 *   tick(held, forget) the member's periodic renewal, every min(lease / 4, 1 s): ONE command per member per tick,
 *                    whatever its number of waiters. It refreshes the liveness key and the expiry of the member's
 *                    holders (re-adding them when the epoch changed: the limit holds again within one lease after a
 *                    FLUSHALL), removes the tickets the member forgot (given up while Redis was unreachable), expires
 *                    dead holders and grants their slots (so a kill -9'd instance's slots return within one lease
 *                    without anybody releasing them). It returns the epoch, the held tickets Redis no longer has
 *                    (lost: the member gives them up) and the member's holders it did not list (grants it missed while
 *                    its subscriber was down).
 *   leave            at thread stop: drop the member's tickets and liveness key, grant their slots.
 * A holder granted to a member expires when the member's liveness key does (now + its PTTL), so that grants to a member
 * that has just died are lost within the same lease as its own holders, not a lease later.
 *
 * Cost: acquire + release per upload (plus the grant's PUBLISH inside a script), one tick per member per period.
 * Waiters cost Redis one ZSET entry each and nothing until they are granted: no polling, no connection per waiter.
 * The capacity is passed by each member (the `upload.concurrency` of its instance).
 *
 * Validity. A member counts its holders as valid until T + lease - margin, T being when it sent the last tick that
 * succeeded: the tick ran at Redis after T and set every one of the member's holders (and the liveness key that bounds
 * new grants) to expire at least a lease after T. When that time passes without a newer successful tick (Redis
 * unreachable, or too slow), the member gives up its holders (their uploads are answered 503 rather than let the
 * limit be exceeded) and its waiters. With a lease of at least 2 x delay-max + 1 s (weir -t checks it), an upload that
 * was granted before Redis became unreachable finishes well before that point.
 *
 * States of a member: up (registered: its last tick succeeded and is valid) or not. While not up, acquisitions wait in
 * the member's pending list when a registration is under way (the first connection attempt, or the tick sent when the
 * connection came up), and are refused at once (reject) or given to the in-process fallback gate (local) when Redis
 * cannot be reached. When the command connection is lost, every waiter is given up at once (503, or moved to the
 * fallback), its ticket kept in the forget list for the next tick. Grants arrive on the subscriber, or through the
 * tick's missed list; a grant for a ticket whose waiter has gone is released at once.
 *
 * Limits of the design: a standalone Redis (or one primary): the scripts name keys they compute, which Redis Cluster
 * refuses. Within an instance, arrival order holds per worker thread; across threads and instances it is the order in
 * which the acquisitions reached Redis.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <h2o/memory.h>
#include "weir/common.h"
#include "weir/gate.h"
#include "weir/gate_redis_reply.h"
#include "weir/redis.h"

#define DEFAULT_BACKOFF_MAX_MS 1000
#define MAX_FORGET_PER_TICK 1000
#define TICKET_MAX 96

/* ---- scripts ------------------------------------------------------------------------------------------------------ */

#define PRELUDE                                                                                                                    \
    "redis.replicate_commands()\n"                                                                                                 \
    "local P, m = ARGV[1], ARGV[2]\n"                                                                                              \
    "local clock = redis.call('TIME')\n"                                                                                           \
    "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"                                              \
    "local function member_of(t) return string.match(t, '^(.*)#') end\n"                                                           \
    "local function expire_holders()\n"                                                                                            \
    "  local gone = redis.call('ZRANGEBYSCORE', P .. ':holders', '-inf', now)\n"                                                   \
    "  for _, t in ipairs(gone) do redis.call('SREM', P .. ':held:' .. member_of(t), t) end\n"                                     \
    "  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', P .. ':holders', '-inf', now) end\n"                                       \
    "end\n"                                                                                                                        \
    "local function hold(t, owner, ttl)\n"                                                                                         \
    "  redis.call('ZADD', P .. ':holders', now + ttl, t)\n"                                                                        \
    "  redis.call('SADD', P .. ':held:' .. owner, t)\n"                                                                            \
    "  redis.call('PEXPIRE', P .. ':held:' .. owner, ttl)\n"                                                                       \
    "end\n"                                                                                                                        \
    "local function grant_waiters(cap)\n"                                                                                          \
    "  local free = cap - redis.call('ZCARD', P .. ':holders')\n"                                                                  \
    "  while free > 0 do\n"                                                                                                        \
    "    local head = redis.call('ZRANGE', P .. ':queue', 0, 0)[1]\n"                                                              \
    "    if not head then return end\n"                                                                                            \
    "    redis.call('ZREM', P .. ':queue', head)\n"                                                                                \
    "    local owner = member_of(head)\n"                                                                                          \
    "    redis.call('SREM', P .. ':q:' .. owner, head)\n"                                                                          \
    "    local ttl = redis.call('PTTL', P .. ':inst:' .. owner)\n"                                                                 \
    "    if ttl > 0 then\n"                                                                                                        \
    "      hold(head, owner, ttl)\n"                                                                                               \
    "      redis.call('PUBLISH', P .. ':grant:' .. owner, head)\n"                                                                 \
    "      free = free - 1\n"                                                                                                      \
    "    end\n"                                                                                                                    \
    "  end\n"                                                                                                                      \
    "end\n"

/* ARGV: name, member, ticket, capacity, lease. Returns 1 held, 0 queued. */
static const char ACQUIRE_LUA[] =
    PRELUDE "local t, cap, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])\n"
            "if redis.call('ZSCORE', P .. ':holders', t) then return 1 end\n"
            "if redis.call('ZSCORE', P .. ':queue', t) then return 0 end\n"
            "local inst = P .. ':inst:' .. m\n"
            "local ttl = redis.call('PTTL', inst)\n"
            "if ttl <= 0 then redis.call('SET', inst, '1', 'PX', lease); ttl = lease end\n"
            "expire_holders()\n"
            "grant_waiters(cap)\n"
            "if redis.call('ZCARD', P .. ':queue') == 0 and redis.call('ZCARD', P .. ':holders') < cap then\n"
            "  hold(t, m, ttl)\n"
            "  return 1\n"
            "end\n"
            "redis.call('ZADD', P .. ':queue', redis.call('INCR', P .. ':seq'), t)\n"
            "redis.call('SADD', P .. ':q:' .. m, t)\n"
            "redis.call('PEXPIRE', P .. ':q:' .. m, ttl)\n"
            "return 0\n";

/* ARGV: name, member, ticket, capacity. Returns 1 when a held slot was freed. */
static const char RELEASE_LUA[] = PRELUDE "local t, cap = ARGV[3], tonumber(ARGV[4])\n"
                                          "local freed = redis.call('ZREM', P .. ':holders', t)\n"
                                          "if freed == 1 then\n"
                                          "  redis.call('SREM', P .. ':held:' .. m, t)\n"
                                          "else\n"
                                          "  redis.call('ZREM', P .. ':queue', t)\n"
                                          "  redis.call('SREM', P .. ':q:' .. m, t)\n"
                                          "end\n"
                                          "expire_holders()\n"
                                          "grant_waiters(cap)\n"
                                          "return freed\n";

/* ARGV: name, member, capacity, lease, epoch, n, n held tickets, then tickets to forget. Returns {epoch, lost, missed}. */
static const char TICK_LUA[] =
    PRELUDE "local cap, lease, epoch, nheld = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])\n"
            "redis.call('SET', P .. ':inst:' .. m, '1', 'PX', lease)\n"
            "local cur = redis.call('GET', P .. ':epoch')\n"
            "if not cur then\n"
            "  cur = clock[1] .. '.' .. clock[2]\n"
            "  redis.call('SET', P .. ':epoch', cur)\n"
            "end\n"
            "local rereg = cur ~= epoch\n"
            "for i = 7 + nheld, #ARGV do\n"
            "  local t = ARGV[i]\n"
            "  redis.call('ZREM', P .. ':holders', t)\n"
            "  redis.call('ZREM', P .. ':queue', t)\n"
            "  redis.call('SREM', P .. ':held:' .. m, t)\n"
            "  redis.call('SREM', P .. ':q:' .. m, t)\n"
            "end\n"
            "expire_holders()\n"
            "local known, lost, missed = {}, {}, {}\n"
            "for i = 7, 6 + nheld do\n"
            "  local t = ARGV[i]\n"
            "  known[t] = true\n"
            "  if rereg or redis.call('ZSCORE', P .. ':holders', t) then hold(t, m, lease) else lost[#lost + 1] = t end\n"
            "end\n"
            "for _, t in ipairs(redis.call('SMEMBERS', P .. ':held:' .. m)) do\n"
            "  if not known[t] then\n"
            "    if redis.call('ZSCORE', P .. ':holders', t) then\n"
            "      hold(t, m, lease)\n"
            "      missed[#missed + 1] = t\n"
            "    else\n"
            "      redis.call('SREM', P .. ':held:' .. m, t)\n"
            "    end\n"
            "  end\n"
            "end\n"
            "if redis.call('EXISTS', P .. ':q:' .. m) == 1 then redis.call('PEXPIRE', P .. ':q:' .. m, lease) end\n"
            "grant_waiters(cap)\n"
            "return {cur, lost, missed}\n";

/* ARGV: name, member, capacity, then tickets to forget. */
static const char LEAVE_LUA[] =
    PRELUDE "local cap = tonumber(ARGV[3])\n"
            "for i = 4, #ARGV do\n"
            "  redis.call('ZREM', P .. ':holders', ARGV[i])\n"
            "  redis.call('ZREM', P .. ':queue', ARGV[i])\n"
            "end\n"
            "for _, t in ipairs(redis.call('SMEMBERS', P .. ':held:' .. m)) do redis.call('ZREM', P .. ':holders', t) end\n"
            "for _, t in ipairs(redis.call('SMEMBERS', P .. ':q:' .. m)) do redis.call('ZREM', P .. ':queue', t) end\n"
            "redis.call('DEL', P .. ':held:' .. m, P .. ':q:' .. m, P .. ':inst:' .. m)\n"
            "expire_holders()\n"
            "grant_waiters(cap)\n"
            "return 1\n";

const char *const weir_gate_redis_scripts[] = {ACQUIRE_LUA, RELEASE_LUA, TICK_LUA, LEAVE_LUA, NULL};

/* ---- types -------------------------------------------------------------------------------------------------------- */

typedef struct st_redis_gate_t {
    weir_gate_t super;
    weir_redis_t *redis;
    weir_redis_script_t acquire, release, tick, leave;
    const weir_redis_script_t *scripts[4];
    char *name;
    char lease_str[24];
    size_t slots;     /* atomic: a reload may change it (set_limits) */
    size_t max_queue; /* atomic: likewise */
    uint64_t lease_ms;
    uint64_t tick_ms;
    uint64_t margin_ms;
    weir_gate_on_failure_t on_failure;
    weir_gate_t *fallback; /* local gate, with on-failure: local */
    char instance[17];
    unsigned next_thread;
    /* statistics, updated with atomic operations from every thread */
    size_t in_use;
    size_t max_in_use;
    size_t waiting;
    uint64_t refused;
    uint64_t lost;
} redis_gate_t;

/* What a waiter of a member is doing (waiter->impl_state). */
enum {
    W_IDLE,
    W_PENDING,   /* in member->pending: its acquire will be sent once the member is registered */
    W_ACQUIRING, /* in member->acquiring: its acquire was sent, no answer yet */
    W_QUEUED,    /* in member->queued: queued at Redis */
    W_HELD,      /* in member->held */
    W_LOCAL,     /* given to the fallback gate, which owns link, thread and state */
};

typedef struct st_member_t {
    redis_gate_t *gate;
    uv_loop_t *loop;
    weir_redis_client_t *client;
    weir_redis_subscriber_t *sub;
    weir_gate_thread_t *fallback;
    uv_timer_t *timer; /* the tick; NULL once closed */
    char id[48];
    char grant_channel[256];
    uint64_t next_ticket;
    int up;         /* registered: the last tick succeeded and is still valid */
    int starting;   /* the first connection attempt has not been decided */
    int ticking;    /* a tick is in flight */
    int tick_again; /* send another as soon as it is back */
    int stopped;
    unsigned ops;         /* commands in flight, each holding the member */
    uint64_t valid_until; /* loop time until which the member's holders are guaranteed */
    char epoch[WEIR__GATE_REDIS_EPOCH_MAX + 1];
    h2o_linklist_t pending;   /* W_PENDING, in ticket order */
    h2o_linklist_t acquiring; /* W_ACQUIRING, in the order sent (ticket order): their replies come in this order */
    h2o_linklist_t queued;    /* W_QUEUED, in ticket order: Redis grants them in this order */
    h2o_linklist_t held;
    uint64_t *forget; /* tickets given up while their fate at Redis is unknown; sent with the next ticks */
    size_t num_forget;
    size_t cap_forget;
} member_t;

typedef enum en_op_kind_t {
    OP_ACQUIRE,
    OP_RELEASE,
    OP_TICK,
    OP_LEAVE,
} op_kind_t;

typedef struct st_op_t {
    member_t *member;
    op_kind_t kind;
    uint64_t ticket;
    uint64_t sent_at;
    size_t forgot; /* tick: how many forget entries it carried */
} op_t;

/* ---- helpers ------------------------------------------------------------------------------------------------------ */

static size_t atomic_add(size_t *p, size_t v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

static void atomic_sub(size_t *p, size_t v)
{
    __atomic_sub_fetch(p, v, __ATOMIC_RELAXED);
}

static void note_held(redis_gate_t *gate)
{
    size_t now = atomic_add(&gate->in_use, 1), max = __atomic_load_n(&gate->max_in_use, __ATOMIC_RELAXED);
    while (now > max && !__atomic_compare_exchange_n(&gate->max_in_use, &max, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static int ticket_str(const member_t *m, uint64_t ticket, char *buf)
{
    return snprintf(buf, TICKET_MAX, "%s#%" PRIu64, m->id, ticket);
}

/* Parses a ticket of this member; @return 0 with *ticket set, or -1 when it is someone else's. */
static int parse_ticket(const member_t *m, const char *s, size_t len, uint64_t *ticket)
{
    return weir__gate_redis_parse_ticket(m->id, s, len, ticket);
}

static weir_gate_waiter_t *find_in(h2o_linklist_t *list, uint64_t ticket, int ordered)
{
    for (h2o_linklist_t *node = list->next; node != list; node = node->next) {
        weir_gate_waiter_t *w = H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, node);
        if (w->ticket == ticket)
            return w;
        if (ordered && w->ticket > ticket)
            break; /* tickets are sent, and granted, in order: the one asked for is not further */
    }
    return NULL;
}

/* The waiter of one of the member's tickets that is not granted yet; both lookups usually stop at a list's head. */
static weir_gate_waiter_t *find_waiting(member_t *m, uint64_t ticket)
{
    weir_gate_waiter_t *w = find_in(&m->acquiring, ticket, 1);
    return w != NULL ? w : find_in(&m->queued, ticket, 1);
}

static void member_free_if_done(member_t *m)
{
    if (m->stopped && m->ops == 0 && m->timer == NULL) {
        free(m->forget);
        free(m);
    }
}

static op_t *op_new(member_t *m, op_kind_t kind, uint64_t ticket)
{
    op_t *op = weir_malloc(sizeof(*op));
    *op = (op_t){.member = m, .kind = kind, .ticket = ticket, .sent_at = uv_now(m->loop)};
    ++m->ops;
    return op;
}

static void forget_ticket(member_t *m, uint64_t ticket)
{
    if (m->num_forget == m->cap_forget) {
        m->cap_forget = m->cap_forget != 0 ? m->cap_forget * 2 : 16;
        m->forget = weir_realloc(m->forget, m->cap_forget * sizeof(m->forget[0]));
    }
    m->forget[m->num_forget++] = ticket;
}

static void on_reply(void *data, int status, const redisReply *reply, const char *message);

/* Sends one of the ticket scripts (acquire or release) for @p ticket. */
static void send_ticket_script(member_t *m, op_kind_t kind, uint64_t ticket)
{
    redis_gate_t *gate = m->gate;
    char t[TICKET_MAX];
    ticket_str(m, ticket, t);
    char slots[24];
    snprintf(slots, sizeof(slots), "%zu", __atomic_load_n(&gate->slots, __ATOMIC_RELAXED));
    const char *argv[5] = {gate->name, m->id, t, slots, gate->lease_str};
    weir_redis_evalsha(m->client, kind == OP_ACQUIRE ? &gate->acquire : &gate->release, 0, kind == OP_ACQUIRE ? 5 : 4, argv, NULL,
                       0, on_reply, op_new(m, kind, ticket));
}

/* Removes @p ticket at Redis: now when connected, else with the next tick. */
static void release_ticket(member_t *m, uint64_t ticket)
{
    if (weir_redis_client_is_up(m->client))
        send_ticket_script(m, OP_RELEASE, ticket);
    else
        forget_ticket(m, ticket);
}

/* ---- waiters ------------------------------------------------------------------------------------------------------ */

static void on_fallback_granted(weir_gate_waiter_t *w, int status)
{
    w->outer_cb(w, status);
}

/* Gives a waiter of the member's to the fallback gate; @return what its acquire returned. */
static int to_fallback(member_t *m, weir_gate_waiter_t *w, weir_gate_cb cb)
{
    w->outer_cb = cb;
    w->impl_state = W_LOCAL;
    w->state = WEIR_GATE_IDLE;
    int ret = weir_gate_acquire(m->gate->fallback, m->fallback, w, on_fallback_granted);
    if (ret < 0)
        w->impl_state = W_IDLE;
    return ret;
}

/* Unlinks a waiter that was not yet granted, and counts it out. */
static void leave_waiting(member_t *m, weir_gate_waiter_t *w)
{
    h2o_linklist_unlink(&w->link);
    atomic_sub(&m->gate->waiting, 1);
}

/* The member gives up a waiter (not yet granted): to the fallback gate, or a failure told to its owner. */
static void give_up_waiter(member_t *m, weir_gate_waiter_t *w, int status)
{
    weir_gate_cb cb = w->cb;

    if (w->impl_state == W_ACQUIRING || w->impl_state == W_QUEUED)
        forget_ticket(m, w->ticket);
    leave_waiting(m, w);
    w->impl_state = W_IDLE;
    w->state = WEIR_GATE_IDLE;
    if (m->gate->on_failure == WEIR_GATE_FAIL_LOCAL) {
        switch (to_fallback(m, w, cb)) {
        case WEIR_GATE_NOW:
            cb(w, 0);
            return;
        case WEIR_GATE_PENDING:
            return;
        default:
            break;
        }
    }
    __atomic_add_fetch(&m->gate->lost, 1, __ATOMIC_RELAXED);
    cb(w, status);
}

static void grant(member_t *m, weir_gate_waiter_t *w)
{
    leave_waiting(m, w);
    w->impl_state = W_HELD;
    w->state = WEIR_GATE_HELD;
    h2o_linklist_insert(&m->held, &w->link);
    note_held(m->gate);
    w->cb(w, 0);
}

/* A slot the member can no longer vouch for: the upload is told and its slot is forgotten (Redis expires it). */
static void revoke_holder(member_t *m, weir_gate_waiter_t *w, int status)
{
    h2o_linklist_unlink(&w->link);
    atomic_sub(&m->gate->in_use, 1);
    __atomic_add_fetch(&m->gate->lost, 1, __ATOMIC_RELAXED);
    forget_ticket(m, w->ticket);
    w->impl_state = W_IDLE;
    w->state = WEIR_GATE_IDLE;
    w->cb(w, status);
}

/* Gives up every waiter that is not granted (pending ones included). */
static void give_up_all_waiters(member_t *m, int status)
{
    /* Oldest first, so that a fallback gate queues them in their order. */
    h2o_linklist_t *lists[] = {&m->queued, &m->acquiring, &m->pending};
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(lists); ++i)
        while (!h2o_linklist_is_empty(lists[i]))
            give_up_waiter(m, H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, lists[i]->next), status);
}

static void send_acquire(member_t *m, weir_gate_waiter_t *w)
{
    w->impl_state = W_ACQUIRING;
    h2o_linklist_insert(&m->acquiring, &w->link);
    send_ticket_script(m, OP_ACQUIRE, w->ticket);
}

/* A grant for one of the member's tickets (published, or missed and reported by a tick). */
static void on_grant(member_t *m, uint64_t ticket)
{
    weir_gate_waiter_t *w = find_waiting(m, ticket);
    if (w != NULL) {
        grant(m, w);
        return;
    }
    if (find_in(&m->held, ticket, 0) != NULL)
        return; /* told already (both a message and a tick reported it) */
    /* Its waiter has gone (the client left, or it was given up): the slot goes to the next in line. */
    release_ticket(m, ticket);
}

/* ---- ticks -------------------------------------------------------------------------------------------------------- */

static void send_tick(member_t *m)
{
    redis_gate_t *gate = m->gate;
    size_t nheld = 0, nforget = m->num_forget < MAX_FORGET_PER_TICK ? m->num_forget : MAX_FORGET_PER_TICK;

    if (m->stopped || !weir_redis_client_is_up(m->client))
        return;
    if (m->ticking) {
        m->tick_again = 1;
        return;
    }
    for (h2o_linklist_t *node = m->held.next; node != &m->held; node = node->next)
        ++nheld;
    size_t argc = 6 + nheld + nforget;
    const char **argv = weir_malloc(argc * sizeof(*argv));
    char *buf = weir_malloc((nheld + nforget) * TICKET_MAX + 24), *p = buf;
    char slots[24];
    snprintf(slots, sizeof(slots), "%zu", __atomic_load_n(&gate->slots, __ATOMIC_RELAXED));
    argv[0] = gate->name;
    argv[1] = m->id;
    argv[2] = slots;
    argv[3] = gate->lease_str;
    argv[4] = m->epoch;
    argv[5] = p;
    p += snprintf(p, 24, "%zu", nheld) + 1;
    size_t i = 6;
    for (h2o_linklist_t *node = m->held.next; node != &m->held; node = node->next) {
        argv[i++] = p;
        p += ticket_str(m, H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, node)->ticket, p) + 1;
    }
    for (size_t f = 0; f != nforget; ++f) {
        argv[i++] = p;
        p += ticket_str(m, m->forget[f], p) + 1;
    }
    op_t *op = op_new(m, OP_TICK, 0);
    op->forgot = nforget;
    m->ticking = 1;
    weir_redis_evalsha(m->client, &gate->tick, 0, (int)argc, argv, NULL, 0, on_reply, op);
    free(argv);
    free(buf);
}

static void handle_tick_reply(member_t *m, op_t *op, int status, const redisReply *reply, const char *message);

static void on_tick_reply(member_t *m, op_t *op, int status, const redisReply *reply, const char *message)
{
    m->ticking = 0;
    handle_tick_reply(m, op, status, reply, message);
    if (m->tick_again) {
        m->tick_again = 0;
        send_tick(m);
    }
}

static void handle_tick_reply(member_t *m, op_t *op, int status, const redisReply *reply, const char *message)
{
    weir__gate_redis_tick_t tick;

    if (status == 0 && (status = weir__gate_redis_tick_reply(reply, &tick)) != 0)
        message = "unexpected reply from Redis";
    if (status != 0) {
        if (!m->up) {
            /* The registration failed: those who waited for it are given up. */
            weir_warn("upload gate: cannot register with Redis at %s: %s", weir_redis_where(m->gate->redis), message);
            give_up_all_waiters(m, status);
        }
        return;
    }
    m->valid_until = op->sent_at + m->gate->lease_ms - m->gate->margin_ms;
    /* The forgotten tickets it carried are gone at Redis (new ones were appended after them). */
    if (op->forgot != 0) {
        assert(op->forgot <= m->num_forget); /* one tick at a time: only ticks take entries off the list */
        memmove(m->forget, m->forget + op->forgot, (m->num_forget - op->forgot) * sizeof(m->forget[0]));
        m->num_forget -= op->forgot;
    }

    const redisReply *lost = tick.lost, *missed = tick.missed;
    int epoch_changed =
        m->epoch[0] != '\0' && (strlen(m->epoch) != tick.epoch_len || memcmp(m->epoch, tick.epoch, tick.epoch_len) != 0);
    snprintf(m->epoch, sizeof(m->epoch), "%.*s", (int)tick.epoch_len, tick.epoch);
    for (size_t i = 0; i != lost->elements; ++i) {
        uint64_t t;
        weir_gate_waiter_t *w;
        if (parse_ticket(m, lost->element[i]->str, lost->element[i]->len, &t) == 0 && (w = find_in(&m->held, t, 0)) != NULL) {
            weir_warn("upload gate: Redis no longer holds a slot of this instance (its lease ran out): giving it up");
            revoke_holder(m, w, -ETIMEDOUT);
        }
    }
    for (size_t i = 0; i != missed->elements; ++i) {
        uint64_t t;
        if (parse_ticket(m, missed->element[i]->str, missed->element[i]->len, &t) == 0)
            on_grant(m, t);
    }
    if (epoch_changed) {
        /* Redis lost its data: the queue went with it. Every waiter asks again (acquire keeps a place already held). */
        weir_warn("upload gate: Redis at %s lost the gate's state (restarted empty, or flushed); registering again",
                  weir_redis_where(m->gate->redis));
        h2o_linklist_t *lists[] = {&m->queued, &m->acquiring};
        for (size_t i = 0; i != WEIR_ARRAY_SIZE(lists); ++i)
            for (h2o_linklist_t *node = lists[i]->next; node != lists[i]; node = node->next)
                send_ticket_script(m, OP_ACQUIRE, H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, node)->ticket);
    }
    if (!m->up) {
        m->up = 1;
        weir_info("upload gate: registered with Redis at %s as %s", weir_redis_where(m->gate->redis), m->id);
        while (!h2o_linklist_is_empty(&m->pending)) {
            weir_gate_waiter_t *w = H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, m->pending.next);
            h2o_linklist_unlink(&w->link);
            send_acquire(m, w);
        }
    }
}

static void on_tick_timer(uv_timer_t *timer)
{
    member_t *m = timer->data;
    uint64_t now = uv_now(m->loop);

    if (now >= m->valid_until && (m->up || !h2o_linklist_is_empty(&m->held))) {
        /* No renewal got through for a lease (minus the margin): the slots may be someone else's at Redis now. */
        size_t holders = 0;
        for (h2o_linklist_t *node = m->held.next; node != &m->held; node = node->next)
            ++holders;
        weir_warn("upload gate: could not renew the lease at Redis at %s in time; giving up %zu upload(s) holding a slot and "
                  "the waiting ones",
                  weir_redis_where(m->gate->redis), holders);
        m->up = 0;
        while (!h2o_linklist_is_empty(&m->held))
            revoke_holder(m, H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, m->held.next), -ETIMEDOUT);
        give_up_all_waiters(m, -ETIMEDOUT);
    }
    send_tick(m);
}

/* ---- replies and state -------------------------------------------------------------------------------------------- */

static void on_reply(void *data, int status, const redisReply *reply, const char *message)
{
    op_t *op = data;
    member_t *m = op->member;

    --m->ops;
    if (m->stopped) {
        free(op);
        member_free_if_done(m);
        return;
    }
    switch (op->kind) {
    case OP_ACQUIRE: {
        weir_gate_waiter_t *w = find_waiting(m, op->ticket);
        if (w == NULL)
            break; /* gone: its release followed the acquire on the same connection */
        int held = status == 0 ? weir__gate_redis_acquire_reply(reply) : status;
        if (held < 0) {
            give_up_waiter(m, w, held);
        } else if (held == 1) {
            grant(m, w);
        } else if (w->impl_state == W_ACQUIRING) {
            h2o_linklist_unlink(&w->link);
            h2o_linklist_insert(&m->queued, &w->link);
            w->impl_state = W_QUEUED;
        }
    } break;
    case OP_RELEASE:
        if (status != 0)
            forget_ticket(m, op->ticket); /* it may or may not have run: make sure with the next tick */
        break;
    case OP_TICK:
        on_tick_reply(m, op, status, reply, message);
        break;
    case OP_LEAVE:
        break;
    }
    free(op);
}

static void on_client_state(void *data, int up)
{
    member_t *m = data;

    m->starting = 0;
    if (up) {
        send_tick(m); /* registers again; the pending acquisitions go once it succeeds */
        return;
    }
    /* Redis cannot be reached: the waiters are told at once. Holders keep their slots while the lease is guaranteed. */
    if (m->up)
        weir_warn("upload gate: Redis at %s is unreachable; %s", weir_redis_where(m->gate->redis),
                  m->gate->on_failure == WEIR_GATE_FAIL_LOCAL ? "falling back to an in-process gate (degraded: the global "
                                                                "limit may be exceeded)"
                                                              : "refusing uploads");
    m->up = 0;
    give_up_all_waiters(m, -EAGAIN);
}

static void on_sub_state(void *data, int up)
{
    member_t *m = data;

    /* Grants published while the subscriber was away are reported by the tick, asked for now. */
    if (up)
        send_tick(m);
}

static void on_message(void *data, const char *msg, size_t len)
{
    member_t *m = data;
    uint64_t ticket;

    if (parse_ticket(m, msg, len, &ticket) == 0)
        on_grant(m, ticket);
}

/* ---- the vtable --------------------------------------------------------------------------------------------------- */

static int thread_start(weir_gate_t *_gate, uv_loop_t *loop, weir_gate_thread_t **out)
{
    redis_gate_t *gate = (redis_gate_t *)_gate;
    member_t *m = weir_calloc(1, sizeof(*m));

    m->gate = gate;
    m->loop = loop;
    snprintf(m->id, sizeof(m->id), "%s.%u", gate->instance, __atomic_fetch_add(&gate->next_thread, 1, __ATOMIC_RELAXED));
    snprintf(m->grant_channel, sizeof(m->grant_channel), "%s:grant:%s", gate->name, m->id);
    m->next_ticket = 1;
    m->starting = 1;
    h2o_linklist_init_anchor(&m->pending);
    h2o_linklist_init_anchor(&m->acquiring);
    h2o_linklist_init_anchor(&m->queued);
    h2o_linklist_init_anchor(&m->held);
    if (gate->fallback != NULL)
        weir_gate_thread_start(gate->fallback, loop, &m->fallback);
    m->timer = weir_malloc(sizeof(*m->timer));
    uv_timer_init(loop, m->timer);
    m->timer->data = m;
    uv_timer_start(m->timer, on_tick_timer, gate->tick_ms, gate->tick_ms);
    /* The tick must not keep a loop alive that has nothing else to do (the connections do not either, when down). */
    uv_unref((uv_handle_t *)m->timer);
    m->client = weir_redis_client_start(gate->redis, loop, on_client_state, m);
    m->sub = weir_redis_subscriber_start(gate->redis, loop, m->grant_channel, on_message, on_sub_state, m);
    *out = (weir_gate_thread_t *)m;
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    member_t *m = handle->data;
    free(handle);
    m->timer = NULL;
    member_free_if_done(m);
}

static void thread_stop(weir_gate_t *_gate, weir_gate_thread_t *thread)
{
    redis_gate_t *gate = (redis_gate_t *)_gate;
    member_t *m = (member_t *)thread;

    assert(h2o_linklist_is_empty(&m->pending) && h2o_linklist_is_empty(&m->acquiring) && h2o_linklist_is_empty(&m->queued) &&
           h2o_linklist_is_empty(&m->held));
    if (weir_redis_client_is_up(m->client)) {
        /* Leave at once rather than let the lease run out: the forgotten tickets and the liveness key go. */
        size_t n = m->num_forget < MAX_FORGET_PER_TICK ? m->num_forget : MAX_FORGET_PER_TICK;
        const char **argv = weir_malloc((3 + n) * sizeof(*argv));
        char *buf = weir_malloc(n * TICKET_MAX + 1), *p = buf;
        char slots[24];
        snprintf(slots, sizeof(slots), "%zu", __atomic_load_n(&gate->slots, __ATOMIC_RELAXED));
        argv[0] = gate->name;
        argv[1] = m->id;
        argv[2] = slots;
        for (size_t i = 0; i != n; ++i) {
            argv[3 + i] = p;
            p += ticket_str(m, m->forget[i], p) + 1;
        }
        weir_redis_evalsha(m->client, &gate->leave, 0, (int)(3 + n), argv, NULL, 0, on_reply, op_new(m, OP_LEAVE, 0));
        free(argv);
        free(buf);
    }
    m->stopped = 1;
    weir_redis_subscriber_stop(m->sub);
    weir_redis_client_stop(m->client, 1); /* the leave (and any release) is sent before the connection closes */
    if (m->fallback != NULL)
        weir_gate_thread_stop(gate->fallback, m->fallback);
    uv_timer_stop(m->timer);
    uv_close((uv_handle_t *)m->timer, on_timer_closed);
}

static int acquire(weir_gate_t *_gate, weir_gate_thread_t *thread, weir_gate_waiter_t *w, weir_gate_cb cb)
{
    redis_gate_t *gate = (redis_gate_t *)_gate;
    member_t *m = (member_t *)thread;
    size_t local_waiting = 0;

    assert(w->state == WEIR_GATE_IDLE);
    if (gate->fallback != NULL) {
        weir_gate_stats_t st;
        weir_gate_stats(gate->fallback, &st);
        local_waiting = st.waiting;
    }
    if (atomic_add(&gate->waiting, 1) + local_waiting > __atomic_load_n(&gate->max_queue, __ATOMIC_RELAXED)) {
        atomic_sub(&gate->waiting, 1);
        __atomic_add_fetch(&gate->refused, 1, __ATOMIC_RELAXED);
        return -EBUSY;
    }
    w->thread = thread;
    w->cb = cb;
    w->ticket = m->next_ticket++;
    w->state = WEIR_GATE_WAITING;
    /* The client's own view first: a connection lost in this loop iteration is told to us only later, and a command
     * sent now would fail at once, calling the waiter back from inside this call. */
    if (m->up && weir_redis_client_is_up(m->client)) {
        send_acquire(m, w);
        return WEIR_GATE_PENDING;
    }
    if (m->starting || (!m->up && weir_redis_client_is_up(m->client))) {
        /* A registration is under way: wait for it (bounded by the caller's queue timeout). */
        w->impl_state = W_PENDING;
        h2o_linklist_insert(&m->pending, &w->link);
        return WEIR_GATE_PENDING;
    }
    atomic_sub(&gate->waiting, 1);
    w->state = WEIR_GATE_IDLE;
    if (gate->on_failure == WEIR_GATE_FAIL_LOCAL) {
        int ret = to_fallback(m, w, cb);
        if (ret != -EBUSY)
            return ret;
    }
    __atomic_add_fetch(&gate->refused, 1, __ATOMIC_RELAXED);
    return -EAGAIN;
}

static void release(weir_gate_t *_gate, weir_gate_waiter_t *w)
{
    redis_gate_t *gate = (redis_gate_t *)_gate;
    member_t *m = (member_t *)w->thread;

    switch (w->impl_state) {
    case W_PENDING:
        leave_waiting(m, w);
        break;
    case W_ACQUIRING:
    case W_QUEUED:
        leave_waiting(m, w);
        release_ticket(m, w->ticket);
        break;
    case W_HELD:
        h2o_linklist_unlink(&w->link);
        atomic_sub(&gate->in_use, 1);
        release_ticket(m, w->ticket);
        break;
    case W_LOCAL:
        weir_gate_release(gate->fallback, w);
        break;
    default:
        break;
    }
    w->impl_state = W_IDLE;
    w->state = WEIR_GATE_IDLE;
}

static void stats(weir_gate_t *_gate, weir_gate_stats_t *st)
{
    redis_gate_t *gate = (redis_gate_t *)_gate;
    weir_gate_stats_t local = {0};

    if (gate->fallback != NULL)
        weir_gate_stats(gate->fallback, &local);
    *st = (weir_gate_stats_t){
        .slots = __atomic_load_n(&gate->slots, __ATOMIC_RELAXED),
        .in_use = __atomic_load_n(&gate->in_use, __ATOMIC_RELAXED) + local.in_use,
        .max_in_use = __atomic_load_n(&gate->max_in_use, __ATOMIC_RELAXED),
        .waiting = __atomic_load_n(&gate->waiting, __ATOMIC_RELAXED) + local.waiting,
        .refused = __atomic_load_n(&gate->refused, __ATOMIC_RELAXED),
        .lost = __atomic_load_n(&gate->lost, __ATOMIC_RELAXED),
    };
    if (local.max_in_use > st->max_in_use)
        st->max_in_use = local.max_in_use;
}

/* The capacity goes to Redis with every script call from now on. */
static void set_limits(weir_gate_t *_gate, size_t slots, size_t max_queue)
{
    redis_gate_t *gate = (redis_gate_t *)_gate;

    __atomic_store_n(&gate->slots, slots, __ATOMIC_RELAXED);
    __atomic_store_n(&gate->max_queue, max_queue, __ATOMIC_RELAXED);
    if (gate->fallback != NULL)
        weir_gate_set_limits(gate->fallback, slots, SIZE_MAX);
}

static void destroy(weir_gate_t *_gate)
{
    redis_gate_t *gate = (redis_gate_t *)_gate;

    if (gate->fallback != NULL)
        weir_gate_destroy(gate->fallback);
    weir_redis_destroy(gate->redis);
    free(gate->name);
    free(gate);
}

static const weir_gate_vtable_t REDIS_VTABLE = {
    .name = "redis",
    .thread_start = thread_start,
    .thread_stop = thread_stop,
    .acquire = acquire,
    .release = release,
    .stats = stats,
    .set_limits = set_limits,
    .destroy = destroy,
};

/* 16 hex digits that differ between processes (and between runs of one). */
static void make_instance_id(char out[17])
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    if (fd >= 0)
        close(fd);
    snprintf(out, 17, "%016" PRIx64, v);
}

int weir_gate_redis_create(const weir_gate_redis_options_t *opts, weir_gate_t **out)
{
    redis_gate_t *gate;
    int ret;

    if (opts->slots == 0 || opts->max_queue == 0 || opts->name == NULL || opts->name[0] == '\0' || opts->lease_ms < 100 ||
        opts->timeout_ms == 0) {
        weir_error("upload gate: inconsistent Redis gate options");
        return -EINVAL;
    }
    gate = weir_calloc(1, sizeof(*gate));
    gate->super.vt = &REDIS_VTABLE;
    weir_redis_script_init(&gate->acquire, ACQUIRE_LUA);
    weir_redis_script_init(&gate->release, RELEASE_LUA);
    weir_redis_script_init(&gate->tick, TICK_LUA);
    weir_redis_script_init(&gate->leave, LEAVE_LUA);
    gate->scripts[0] = &gate->acquire;
    gate->scripts[1] = &gate->release;
    gate->scripts[2] = &gate->tick;
    gate->scripts[3] = &gate->leave;
    weir_redis_options_t ropts = {.url = opts->url,
                                  .who = "upload gate",
                                  .path = opts->path,
                                  .pool_size = 1,
                                  .timeout_ms = opts->timeout_ms,
                                  .backoff_max_ms = opts->backoff_max_ms != 0 ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS,
                                  .scripts = gate->scripts,
                                  .num_scripts = 4};
    if ((ret = weir_redis_create(&ropts, &gate->redis)) != 0) {
        free(gate);
        return ret;
    }
    gate->name = weir_strdup(opts->name);
    gate->slots = opts->slots;
    gate->max_queue = opts->max_queue;
    gate->lease_ms = opts->lease_ms;
    gate->tick_ms = opts->lease_ms / 4 < 1000 ? opts->lease_ms / 4 : 1000;
    gate->margin_ms = opts->lease_ms / 10;
    gate->on_failure = opts->on_failure;
    snprintf(gate->lease_str, sizeof(gate->lease_str), "%" PRIu64, opts->lease_ms);
    if (opts->on_failure == WEIR_GATE_FAIL_LOCAL)
        gate->fallback = weir_gate_local_create(opts->slots, SIZE_MAX);
    make_instance_id(gate->instance);
    *out = &gate->super;
    return 0;
}

int weir_gate_redis_thread_is_up(const weir_gate_thread_t *thread)
{
    return ((const member_t *)thread)->up;
}
