// aedes-persistence-redis ships no types: the part fleetgate uses.
declare module 'aedes-persistence-redis' {
  import type { AedesPersistence } from 'aedes-persistence';
  import type { Redis } from 'ioredis';

  export interface RedisPersistenceOptions {
    /** the connection to use (its owner configures reconnection and the offline queue) */
    conn: Redis;
    /** at most this many queued messages are read per session at reconnect (default 1000) */
    maxSessionDelivery?: number;
  }

  /** `destroy()` without a callback: with one it waits for a `ready` event that aedes 2 (which calls `setup()`) never causes */
  export default function redisPersistence(options: RedisPersistenceOptions): Omit<AedesPersistence, 'destroy'> & { destroy(): Promise<void> };
}
