import type { z } from 'zod';
import { GatewayError } from './errors.ts';

/** Validates a request body (REST API, CLI) against a zod schema; the error names the first bad field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new GatewayError('FG_ERR_REQUEST_INVALID', where + issue.message);
}
