// Writes deploy/haproxy.cfg for deploy/compose.yaml from the same generator `fleetgate cluster` uses.
import { writeFileSync } from 'node:fs';
import { kComposeFrontends, kComposeInstances } from '../dist/cluster/compose.js';
import { haproxyConfig } from '../dist/cluster/haproxy.js';

writeFileSync(new URL('../deploy/haproxy.cfg', import.meta.url), haproxyConfig(kComposeFrontends, kComposeInstances));
