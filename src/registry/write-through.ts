import { GatewayError } from '../errors.ts';
import { StoreConflictError } from './store.ts';
import type { RegistryView } from './view.ts';

/**
 * Runs a store write, turns a unique-constraint clash into FG_ERR_CONFLICT, and syncs the view before returning, so
 * the hot path sees the change before the caller does.
 */
export async function writeThrough<T>(view: RegistryView, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof StoreConflictError) throw new GatewayError('FG_ERR_CONFLICT', `${err.field} already exists`);
    throw err;
  } finally {
    await view.sync();
  }
}
