import type { Redis } from 'ioredis';

/** persistent sessions by the time they expire (ms), `+inf` while online or never expiring */
const kSessions = 'fleetgate:mqtt:sessions';
/** the online persistent sessions: clientId → `<broker id>\t<interval s>` of the instance they are connected to */
const kOwners = 'fleetgate:mqtt:owners';
/** the broker ids of the instances that own sessions; each refreshes its `alive` key while it runs */
const kBrokers = 'fleetgate:mqtt:brokers';
const aliveKey = (broker: string): string => `fleetgate:mqtt:alive:${broker}`;
/** aedes-persistence-redis's set of clients with stored subscriptions, and its queue of one client */
const kClients = 'clients';
const outgoingKey = (clientId: string): string => `outgoing:${encodeURIComponent(clientId)}`;
/** counts are read from Redis at most this often, whatever the scrape rate */
const kCountsMs = 5_000;
/** expired sessions claimed per sweep: the rest come at the next one */
const kSweepBatch = 500;

/**
 * A session's connection left `broker` (ARGV[2]): it expires its interval (ARGV[3], or the one stored when it
 * connected) after ARGV[4] (ms), 0 meaning never. Nothing when another instance owns it now (a takeover).
 */
const kLeft = `
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if not owner then return 0 end
local tab = string.find(owner, '\\t', 1, true)
if string.sub(owner, 1, tab - 1) ~= ARGV[2] then return 0 end
local interval = tonumber(ARGV[3] ~= '' and ARGV[3] or string.sub(owner, tab + 1))
redis.call('HDEL', KEYS[2], ARGV[1])
if interval == 0 then redis.call('ZADD', KEYS[1], '+inf', ARGV[1]) else redis.call('ZADD', KEYS[1], tonumber(ARGV[4]) + interval * 1000, ARGV[1]) end
return 1`;

/** Claims an expired session (ARGV[1]) at ARGV[2] (ms): 1 for the one instance that removes it, 0 once it is back. */
const kClaim = `
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0`;

type ScriptedRedis = Redis & {
  fleetgateSessionLeft(sessions: string, owners: string, clientId: string, broker: string, interval: string, now: number): Promise<number>;
  fleetgateSessionClaim(sessions: string, clientId: string, now: number): Promise<number>;
};

/**
 * When persistent sessions kept in Redis expire, shared by the instances: each one's expiry time is stored in Redis
 * when its connection ends, so that any instance (one per session: an atomic claim) ends it in time, across restarts,
 * also MQTT 3.1.1 sessions (FLEETGATE_MQTT_SESSION_EXPIRY_MAX) for which aedes arms no timer. The sessions online on
 * an instance that died (no disconnect was seen) start expiring when another instance notices it is gone.
 * Also the counts of stored sessions and queued messages, read at most every few seconds.
 */
export function createRedisSessions(conn: Redis, broker: string) {
  const redis = conn as ScriptedRedis;
  redis.defineCommand('fleetgateSessionLeft', { numberOfKeys: 2, lua: kLeft });
  redis.defineCommand('fleetgateSessionClaim', { numberOfKeys: 1, lua: kClaim });
  let counts: { sessions: number; queued: number } | undefined;
  let countedAt = 0;

  const count = async (): Promise<void> => {
    const [sessions, clients] = await Promise.all([redis.zcard(kSessions), redis.smembers(kClients)]);
    const lengths = await redis.pipeline(clients.map((clientId) => ['llen', outgoingKey(clientId)])).exec();
    const queued = (lengths ?? []).reduce((n, [, length]) => n + (typeof length === 'number' ? length : 0), 0);
    counts = { sessions, queued };
  };

  /** The sessions online on instances that stopped refreshing their `alive` key start expiring now. */
  const reclaimDead = async (now: number): Promise<void> => {
    for (const other of await redis.smembers(kBrokers)) {
      if (other === broker || (await redis.exists(aliveKey(other))) === 1) continue;
      if ((await redis.srem(kBrokers, other)) !== 1) continue; // another instance took it
      for (const [clientId, owner] of Object.entries(await redis.hgetall(kOwners))) {
        if (owner.startsWith(`${other}\t`)) await redis.fleetgateSessionLeft(kSessions, kOwners, clientId, other, '', now);
      }
    }
  };

  return {
    /** A client connected here: persistent for `interval` s after it leaves (0: for ever), or (undefined) not. */
    async online(clientId: string, interval: number | undefined): Promise<void> {
      if (interval === undefined) {
        await redis.multi().hdel(kOwners, clientId).zrem(kSessions, clientId).exec();
        return;
      }
      await redis.multi().hset(kOwners, clientId, `${broker}\t${interval}`).zadd(kSessions, '+inf', clientId).exec();
    },
    /** A persistent session's connection here ended: it expires `interval` s from now (0: never). */
    async offline(clientId: string, interval: number): Promise<void> {
      await redis.fleetgateSessionLeft(kSessions, kOwners, clientId, broker, String(interval), Date.now());
    },
    /**
     * Says this instance is alive for `aliveMs` more, hands the sessions of dead instances to expiry, and claims
     * expired sessions: the client ids whose sessions this instance must end.
     */
    async claimExpired(aliveMs: number): Promise<string[]> {
      const now = Date.now();
      await redis.multi().set(aliveKey(broker), '1', 'PX', aliveMs).sadd(kBrokers, broker).exec();
      await reclaimDead(now);
      const claimed: string[] = [];
      for (const clientId of await redis.zrangebyscore(kSessions, '-inf', now, 'LIMIT', 0, kSweepBatch)) {
        if ((await redis.fleetgateSessionClaim(kSessions, clientId, now)) === 1) claimed.push(clientId);
      }
      return claimed;
    },
    /** Stored sessions and queued messages as last read (undefined before the first read); read again when stale. */
    counts(): { sessions: number; queued: number } | undefined {
      if (Date.now() - countedAt >= kCountsMs) {
        countedAt = Date.now();
        count().catch(() => {}); // Redis down: the last counts stay, health says why
      }
      return counts;
    },
    /**
     * This instance stops: its `alive` key goes, so that the next sweep elsewhere starts the expiry of any session
     * whose disconnect did not reach Redis before the connection closed.
     */
    async close(): Promise<void> {
      await redis.del(aliveKey(broker));
    },
  };
}

export type RedisSessions = ReturnType<typeof createRedisSessions>;
