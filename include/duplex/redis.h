/*
 * libduplex: the Redis session store.
 *
 * A cluster's shared session cache on Redis, for dx_tls_server (see
 * dx_tls_server_set_session_store()): servers in any number of processes
 * that share one Redis resume each other's sessions by id. Built when
 * libduplex was configured with hiredis and libuv (the header is then
 * installed; <duplex/duplex.h> does not include it). The store talks to
 * Redis with hiredis's asynchronous API on a libuv loop. It can also share
 * the servers' session ticket keys (dx_redis_store_share_ticket_keys()).
 *
 * KEYS: a session is the value of PREFIX + "s:" + the session id in
 * lowercase hexadecimal, its DER bytes, set with SET ... PX so that Redis
 * drops it when the session expires (the session timeout, on the server's
 * clock). The prefix defaults to DX_REDIS_DEFAULT_PREFIX.
 *
 * NEVER IN THE WAY OF A HANDSHAKE: every lookup is answered within the
 * store's timeout (DX_REDIS_DEFAULT_TIMEOUT_MS by default); past it, or
 * when Redis answers an error or anything but a string, the answer is
 * "none" and the handshake goes on as a full one. While the connection is
 * not up (before the first one is, and between a drop and the next) the
 * answer is "none" at once, and new sessions are not sent. A string
 * that is no session is a full handshake too, and the key is deleted.
 * Every such failure is counted (dx_redis_store_get_stats()). A new
 * session is sent to Redis without waiting for the reply; a failed SET is
 * counted.
 *
 * CONNECTION: made at once by dx_redis_store_new(), with AUTH and SELECT
 * from the URL queued first; one not up within DX_REDIS_CONNECT_TIMEOUT_MS
 * counts as failed. When it fails or drops, the store reconnects
 * after a delay that starts at the backoff's minimum and doubles at each
 * failed attempt up to its maximum (DX_REDIS_DEFAULT_BACKOFF_MIN_MS,
 * DX_REDIS_DEFAULT_BACKOFF_MAX_MS), back to the minimum once connected.
 *
 * THREADS: a store is used from its loop's thread, as the servers it
 * serves.
 *
 * LIFETIME: dx_redis_store_free() detaches the store from the servers it
 * serves (they go back to their built-in caches) and answers the lookups
 * still waiting with "none". Free the store before those servers. Its
 * handles are closed with uv_close(): run the loop afterwards for libuv
 * to release them.
 */
#ifndef DUPLEX_REDIS_H
#define DUPLEX_REDIS_H

#include <uv.h>

#include <duplex/common.h>
#include <duplex/tls_server.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DX_REDIS_DEFAULT_PREFIX "dx:tls:"
#define DX_REDIS_DEFAULT_TIMEOUT_MS 50u
#define DX_REDIS_DEFAULT_BACKOFF_MIN_MS 100u
#define DX_REDIS_DEFAULT_BACKOFF_MAX_MS 5000u
#define DX_REDIS_CONNECT_TIMEOUT_MS 1000u
#define DX_REDIS_DEFAULT_TICKET_PERIOD_MS (12u * 3600u * 1000u)
#define DX_REDIS_TICKET_CHECK_MS 250u

typedef struct dx_redis_store dx_redis_store;

/*
 * A store connected to the Redis of url, on loop:
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 * HOST a name or an IPv4 address (an IPv6 one in brackets), PORT 6379 by
 * default, DB 0 by default (SELECT when another). A PASSWORD is sent with
 * AUTH (with USER when given: Redis 6 ACLs); it may contain '@' and '/'
 * (the user information ends at the last '@'), not ':' in USER. The connection is made in the background (see CONNECTION above;
 * dx_redis_store_connected() tells when it is up). Returns
 * 0, DX_EINVAL (NULL, or url not of that form), DX_ENOMEM.
 */
DX_EXTERN int dx_redis_store_new(uv_loop_t *loop, const char *url, dx_redis_store **out);
/* Detaches, answers waiting lookups with none, closes. NULL is ignored. */
DX_EXTERN void dx_redis_store_free(dx_redis_store *rs);

/* The prefix of every key (copied; at most 256 bytes, not empty).
 * Returns 0, DX_EINVAL, DX_ENOMEM. */
DX_EXTERN int dx_redis_store_set_prefix(dx_redis_store *rs, const char *prefix);
/* The bound of a lookup, in ms (at least 1). Returns 0, DX_EINVAL. */
DX_EXTERN int dx_redis_store_set_timeout(dx_redis_store *rs, uint64_t ms);
/* The reconnection delays: min_ms, doubling up to max_ms (1 <= min_ms <=
 * max_ms). Returns 0, DX_EINVAL. */
DX_EXTERN int dx_redis_store_set_backoff(dx_redis_store *rs, uint64_t min_ms,
                                         uint64_t max_ms);

/*
 * Makes the store srv's session store (dx_tls_server_set_session_store()
 * with the store's put, get and del). One store may serve several
 * servers; each put's expiry is read on its server's clock. Returns 0,
 * DX_EINVAL, DX_ENOMEM.
 */
DX_EXTERN int dx_redis_store_attach(dx_redis_store *rs, dx_tls_server *srv);

/* Deletes the session stored under id (DEL, without waiting). Returns 0,
 * DX_EINVAL (NULL, or id_len 0 or over 32), DX_ENOMEM, DX_ESTATE (not
 * connected). */
DX_EXTERN int dx_redis_store_delete(dx_redis_store *rs, const uint8_t *id, size_t id_len);

/*
 * Ticket keys shared through Redis (see dx_tls_server_get_ticket_keys()):
 * time is cut in periods of period_ms (DX_REDIS_DEFAULT_TICKET_PERIOD_MS
 * is the usual choice; 0 stops sharing, otherwise at least 1000) on the
 * store's clock. The keys of period n are the value of PREFIX + "tk:" +
 * n: the first server of the cluster to need them makes them at random
 * (SET ... NX, expiring after three periods) and every server reads the
 * same. Each server the store serves holds the keys of the present
 * period to seal tickets and those of the one before to open them (and
 * renew them): a ticket lives for one period more than its keys, no
 * longer. The store looks at its clock every DX_REDIS_TICKET_CHECK_MS and
 * when it connects; until it has read the keys (Redis down), servers keep
 * those they have. The keys live in memory and in Redis only: a Redis
 * that persists (RDB, AOF) writes them to its disk, so give the cluster a
 * Redis without persistence, or one whose disk is as safe as the keys.
 * Returns 0, DX_EINVAL.
 */
DX_EXTERN int dx_redis_store_share_ticket_keys(dx_redis_store *rs, uint64_t period_ms);
/* The clock of the ticket key periods, in ms (NULL: CLOCK_REALTIME, which
 * the machines of a cluster share). Returns 0, DX_EINVAL. */
DX_EXTERN int dx_redis_store_set_clock(dx_redis_store *rs, dx_tls_clock_fn now, void *arg);

/* Whether the connection is up (AUTH and SELECT done). */
DX_EXTERN bool dx_redis_store_connected(const dx_redis_store *rs);

typedef struct dx_redis_stats {
    uint64_t gets;        /* lookups asked */
    uint64_t hits;        /* answered with a session */
    uint64_t misses;      /* Redis had nothing */
    uint64_t timeouts;    /* answered "none" when the timeout passed */
    uint64_t unavailable; /* answered "none" at once: not connected */
    uint64_t errors;      /* error replies, or a lost connection, to any command */
    uint64_t bad;         /* a value that was no session (deleted) */
    uint64_t puts;        /* sessions sent */
    uint64_t dels;        /* deletions sent */
    uint64_t connects;    /* connections made (AUTH and SELECT done) */
    uint64_t connect_failures; /* attempts that failed, and drops */
    uint64_t key_sets;    /* ticket keys read from Redis (a period's) */
} dx_redis_stats;
/* The store's counters since it was made (zeros for NULL). */
DX_EXTERN void dx_redis_store_get_stats(const dx_redis_store *rs, dx_redis_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_REDIS_H */
