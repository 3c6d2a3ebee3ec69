// Flag parsing shared by the subcommands: node's parseArgs in strict mode, so an unknown or
// malformed flag is an error with exit code 2, never silently ignored.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { MandateError } from '../errors.ts';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parseFlags<O extends Options>(command: string, args: readonly string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: [...args], options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals });
  } catch (err) {
    throw new MandateError('FLAG_INVALID', `mandate ${command}: ${(err as Error).message}`);
  }
}

export function required(command: string, value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new MandateError('FLAG_INVALID', `mandate ${command}: --${flag} is required`);
  return value;
}

/** `NS/NAME` → parts; both must be DNS labels/subdomains as Kubernetes names are. */
export function parseIdentityRef(command: string, ref: string): { namespace: string; name: string } {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(ref);
  if (!m) throw new MandateError('FLAG_INVALID', `mandate ${command}: --identity must be NAMESPACE/NAME, got "${ref}"`);
  return { namespace: m[1]!, name: m[3]! };
}

