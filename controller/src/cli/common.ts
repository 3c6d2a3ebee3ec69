// Flags every subcommand that touches state shares, and how they become the one frozen Config:
// defaults, then --config FILE, then the environment (log level), then individual flags.
import { buildConfig, envOverrides, readConfigFile, type Config, type ConfigInput } from '../config.ts';
import { createLogger, type Logger } from '../log.ts';
import type { Options } from './args.ts';

export const configFlags = {
  config: { type: 'string' },
  data: { type: 'string' },
  manifests: { type: 'string' },
  'trust-domain': { type: 'string' },
} as const satisfies Options;

export interface ConfigFlagValues {
  config?: string;
  data?: string;
  manifests?: string;
  'trust-domain'?: string;
}

export function configFromFlags(values: ConfigFlagValues, extra: ConfigInput = {}): Config {
  const file = values.config ? readConfigFile(values.config) : {};
  const env = envOverrides() as Record<string, Record<string, unknown> | undefined>;
  const flags: Record<string, unknown> = { ...env, ...extra };
  // Flags win over the environment field by field, not section by section.
  for (const key of ['cluster', 'log'] as const) if (env[key] && extra[key]) flags[key] = { ...env[key], ...extra[key] };
  if (values.data) flags.dataDir = values.data;
  if (values['trust-domain']) flags.trustDomain = values['trust-domain'];
  if (values.manifests) flags.standalone = { ...(extra.standalone ?? {}), manifests: values.manifests };
  // A --data flag moves the audit folder with it unless the file says where audit goes.
  if (values.data && !file.audit?.dir) flags.audit = { ...(extra.audit ?? {}), dir: `${values.data}/audit` };
  return buildConfig(file, flags);
}

/** The process logger; one-shot commands (`quiet`) log warnings and errors only, unless asked. */
export function loggerFor(config: Config, opts: { quiet?: boolean } = {}): Logger {
  const level = opts.quiet && config.log.level === 'info' ? 'warn' : config.log.level;
  return createLogger({ level });
}
