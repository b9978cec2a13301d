import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { digestSecret, generateSecret, kMinSecretLength } from '../auth/secret.ts';
import { GatewayError } from '../errors.ts';
import { parseInput } from '../parse-input.ts';
import type { Store } from './store.ts';
import { writeThrough } from './write-through.ts';
import { kConnectionTypes, kPayloadFormats, type Channel, type Client, type Connection, type Domain } from './types.ts';
import type { RegistryView } from './view.ts';

// Route names sit in URLs and topics next to fixed words: keep them to a safe charset, and never equal to a word the
// router or the topic grammar gives a meaning.
const kReservedRoutes = new Set(['m', 'c', 'http', 'ws', 'mqtt', 'channels', 'messages', 'domains', 'users', 'health', 'metrics', 'keys', 'password', 'oauth']);
const kUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const route = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'route: lowercase letters, digits, "-" and "_", at most 63, starting with a letter or digit')
  .refine((r) => !kReservedRoutes.has(r), 'route is a reserved word')
  .refine((r) => !kUuid.test(r), 'route must not look like an id');
const name = z.string().trim().min(1).max(256);
const secret = z.string().min(kMinSecretLength, `secret must be at least ${kMinSecretLength} characters`).max(1024);
const ids = z.array(z.string().min(1)).min(1);

const kSchemas = {
  domain: z.object({ name, route: route.optional() }),
  client: z.object({ name, secret: secret.optional(), external_id: z.string().min(1).max(256).optional() }),
  channel: z.object({ name, route: route.optional(), payload_format: z.enum(kPayloadFormats).optional() }),
  connect: z.object({ client_ids: ids, channel_ids: ids, types: z.array(z.enum(kConnectionTypes)).min(1).optional() }),
  secret: z.object({ secret }),
  members: z.object({ user_ids: ids }),
};

export type DomainInput = z.input<typeof kSchemas.domain>;
export type ClientInput = z.input<typeof kSchemas.client>;
export type ChannelInput = z.input<typeof kSchemas.channel>;
export type ConnectInput = z.input<typeof kSchemas.connect>;

/** Wire shapes (snake_case, as in the Magistrala API). A client's secret appears only on create and rotation. */
export const toDomainJson = (d: Domain) => ({ id: d.id, name: d.name, route: d.route, created_at: d.createdAt });
export const toClientJson = (c: Client) => ({
  id: c.id, domain_id: c.domainId, name: c.name, external_id: c.externalId, status: c.status, created_at: c.createdAt,
});
export const toConnectionJson = (c: Connection) => ({ client_id: c.clientId, channel_id: c.channelId, type: c.type });
export const toChannelJson = (c: Channel) => ({
  id: c.id, domain_id: c.domainId, name: c.name, route: c.route, payload_format: c.payloadFormat, created_at: c.createdAt,
});

/** Told of every change once it is written: the operation and the ids involved (never a secret), for the audit log. */
export type ChangeHook = (op: string, ids: Record<string, string | number | readonly string[]>) => void;

/**
 * Provisioning: the operations of DESIGN.md §9, for the REST API and the CLI alike. Every write goes to the store and
 * then syncs the view, so the hot path sees it before the call returns. Failures throw GatewayError.
 */
export class Provisioning {
  private readonly store: Store;
  private readonly view: RegistryView;
  private readonly changed: ChangeHook;

  constructor(store: Store, view: RegistryView, changed: ChangeHook = () => undefined) {
    this.store = store;
    this.view = view;
    this.changed = changed;
  }

  async createDomain(input: DomainInput): Promise<Domain> {
    const body = parseInput(kSchemas.domain, input);
    const domain: Domain = { id: randomUUID(), name: body.name, route: body.route ?? null, createdAt: now() };
    await this.write(() => this.store.insertDomain(domain));
    this.changed('domain.create', { domain_id: domain.id });
    return domain;
  }

  listDomains(): Promise<Domain[]> {
    return this.store.listDomains();
  }

  /**
   * Deletes a domain and everything in it: its clients (their live connections are closed, as on client delete), its
   * channels, their connections, and its members' membership (their tokens no longer reach its channels).
   */
  async deleteDomain(ref: string): Promise<void> {
    const domain = this.domain(ref);
    await this.write(() => this.store.deleteDomain(domain.id));
    this.changed('domain.delete', { domain_id: domain.id });
  }

  async createClient(domainRef: string, input: ClientInput): Promise<{ client: Client; secret: string }> {
    const domain = this.domain(domainRef);
    const body = parseInput(kSchemas.client, input);
    const secret = body.secret ?? generateSecret();
    const client: Client = {
      id: randomUUID(), domainId: domain.id, name: body.name, secretDigest: digestSecret(secret),
      externalId: body.external_id ?? null, status: 'enabled', createdAt: now(),
    };
    await this.write(() => this.store.insertClient(client));
    this.changed('client.create', { domain_id: domain.id, client_id: client.id });
    return { client, secret };
  }

  async listClients(domainRef: string): Promise<Client[]> {
    return this.store.listClients(this.domain(domainRef).id);
  }

  async getClient(domainRef: string, id: string): Promise<Client> {
    return this.client(this.domain(domainRef), id);
  }

  /** Rotation: the old secret stops working at once, and live connections that used it are closed (view listeners). */
  async setClientSecret(domainRef: string, id: string, input: unknown): Promise<{ client: Client; secret: string }> {
    const client = this.client(this.domain(domainRef), id);
    const { secret } = parseInput(kSchemas.secret, input);
    await this.write(() => this.store.updateClient(client.id, { secretDigest: digestSecret(secret) }));
    this.changed('client.secret', { domain_id: client.domainId, client_id: client.id });
    return { client: this.view.client(client.id)!, secret };
  }

  async setClientStatus(domainRef: string, id: string, status: Client['status']): Promise<Client> {
    const client = this.client(this.domain(domainRef), id);
    await this.write(() => this.store.updateClient(client.id, { status }));
    this.changed(status === 'enabled' ? 'client.enable' : 'client.disable', { domain_id: client.domainId, client_id: client.id });
    return this.view.client(client.id)!;
  }

  async deleteClient(domainRef: string, id: string): Promise<void> {
    const client = this.client(this.domain(domainRef), id);
    await this.write(() => this.store.deleteClient(client.id));
    this.changed('client.delete', { domain_id: client.domainId, client_id: client.id });
  }

  async createChannel(domainRef: string, input: ChannelInput): Promise<Channel> {
    const domain = this.domain(domainRef);
    const body = parseInput(kSchemas.channel, input);
    const channel: Channel = {
      id: randomUUID(), domainId: domain.id, name: body.name, route: body.route ?? null,
      payloadFormat: body.payload_format ?? 'senml+json', createdAt: now(),
    };
    await this.write(() => this.store.insertChannel(channel));
    this.changed('channel.create', { domain_id: domain.id, channel_id: channel.id });
    return channel;
  }

  async listChannels(domainRef: string): Promise<Channel[]> {
    return this.store.listChannels(this.domain(domainRef).id);
  }

  async deleteChannel(domainRef: string, id: string): Promise<void> {
    const channel = this.channelOf(this.domain(domainRef), id);
    await this.write(() => this.store.deleteChannel(channel.id));
    this.changed('channel.delete', { domain_id: channel.domainId, channel_id: channel.id });
  }

  /** The domain's connections; `client` / `channel` (id, or route for a channel) narrow the list to one of them. */
  async listConnections(domainRef: string, filter: { client?: string; channel?: string } = {}): Promise<Connection[]> {
    const domain = this.domain(domainRef);
    const clientId = filter.client === undefined ? undefined : this.client(domain, filter.client).id;
    const channelId = filter.channel === undefined ? undefined : this.channelOf(domain, filter.channel).id;
    return (await this.store.listConnections(domain.id))
      .filter((c) => (clientId === undefined || c.clientId === clientId) && (channelId === undefined || c.channelId === channelId));
  }

  /** Connects every listed client to every listed channel for each type (default: publish and subscribe). */
  async connect(domainRef: string, input: ConnectInput): Promise<number> {
    const connections = this.connections(domainRef, input);
    const count = await this.write(() => this.store.connect(connections));
    this.changed('connect', connectionIds(connections, count));
    return count;
  }

  async disconnect(domainRef: string, input: ConnectInput): Promise<number> {
    const connections = this.connections(domainRef, input);
    const count = await this.write(() => this.store.disconnect(connections));
    this.changed('disconnect', connectionIds(connections, count));
    return count;
  }

  /** Makes users members of a domain: they may then use its channels with their tokens (DESIGN.md §5). */
  async assignUsers(domainRef: string, input: unknown): Promise<number> {
    const domain = this.domain(domainRef);
    const { user_ids } = parseInput(kSchemas.members, input);
    for (const id of user_ids) if (this.view.user(id) === undefined) throw new GatewayError('FG_ERR_NOT_FOUND', `user "${id}" not found`);
    const count = await this.write(() => this.store.addMembers(domain.id, user_ids));
    this.changed('users.assign', { domain_id: domain.id, user_ids, count });
    return count;
  }

  async unassignUsers(domainRef: string, input: unknown): Promise<number> {
    const domain = this.domain(domainRef);
    const { user_ids } = parseInput(kSchemas.members, input);
    const count = await this.write(() => this.store.removeMembers(domain.id, user_ids));
    this.changed('users.unassign', { domain_id: domain.id, user_ids, count });
    return count;
  }

  private connections(domainRef: string, input: ConnectInput): Connection[] {
    const domain = this.domain(domainRef);
    const body = parseInput(kSchemas.connect, input);
    const clients = body.client_ids.map((id) => this.client(domain, id).id);
    const channels = body.channel_ids.map((id) => this.channelOf(domain, id).id);
    const types = body.types ?? kConnectionTypes;
    return clients.flatMap((clientId) => channels.flatMap((channelId) => types.map((type) => ({ clientId, channelId, type }))));
  }

  private domain(ref: string): Domain {
    const domain = this.view.domain(ref);
    if (domain === undefined) throw new GatewayError('FG_ERR_NOT_FOUND', `domain "${ref}" not found`);
    return domain;
  }

  private client(domain: Domain, id: string): Client {
    const client = this.view.client(id);
    if (client === undefined || client.domainId !== domain.id) throw new GatewayError('FG_ERR_NOT_FOUND', `client "${id}" not found`);
    return client;
  }

  private channelOf(domain: Domain, ref: string): Channel {
    const channel = this.view.channel(domain.id, ref);
    if (channel === undefined) throw new GatewayError('FG_ERR_NOT_FOUND', `channel "${ref}" not found`);
    return channel;
  }

  private write<T>(op: () => Promise<T>): Promise<T> {
    return writeThrough(this.view, op);
  }
}

/** The ids a (dis)connection touched, each once, and how many rows changed. */
function connectionIds(connections: Connection[], count: number) {
  const unique = (ids: string[]) => [...new Set(ids)];
  return { client_ids: unique(connections.map((c) => c.clientId)), channel_ids: unique(connections.map((c) => c.channelId)), types: unique(connections.map((c) => c.type)), count };
}

function now(): string {
  return new Date().toISOString();
}
