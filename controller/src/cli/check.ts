// `mandate check`: the decision the server would make for an identity and a request, offline
// and explained (like `opa eval`): action, parameters, deciding rule, DryRun verdicts. Exit 0
// when allowed, 3 when not. Rate limits start empty here: a single call is never limited.
import { readFile } from 'node:fs/promises';
import { runCheck } from '../authz/check.ts';
import type { CheckRequestObject } from '../authz/request.ts';
import { MandateError } from '../errors.ts';
import { agentSpiffeId } from '../identity/spiffe.ts';
import { createLimiterState } from '../policy/limits.ts';
import { parseFlags, parseIdentityRef, required } from './args.ts';
import { configFlags, configFromFlags, loggerFor } from './common.ts';
import { loadCompiled } from './manifests.ts';

const help = `usage: mandate check --identity NAMESPACE/NAME --url URL [--method GET] [--body JSON | --body @FILE]
                     [--header NAME:VALUE]... [--time ISO-8601] [--json] [--manifests DIR] [--config FILE]

Explains the decision for one request: the action it maps to, its parameters, the rule that
decided and what DryRun policies would have said. Exit 0 allowed, 3 denied or approval needed.`;

export async function checkCommand(args: readonly string[]): Promise<number> {
  const { values } = parseFlags('check', args, {
    ...configFlags,
    identity: { type: 'string' },
    method: { type: 'string', default: 'GET' },
    url: { type: 'string' },
    body: { type: 'string' },
    header: { type: 'string', multiple: true },
    time: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(help + '\n');
    return 0;
  }
  const ref = parseIdentityRef('check', required('check', values.identity, 'identity'));
  let url: URL;
  try {
    url = new URL(required('check', values.url, 'url'));
  } catch {
    throw new MandateError('FLAG_INVALID', `mandate check: --url must be an absolute URL, got "${values.url}"`);
  }
  const now = values.time ? new Date(values.time) : new Date();
  if (Number.isNaN(now.getTime())) throw new MandateError('FLAG_INVALID', `mandate check: --time must be an ISO-8601 time, got "${values.time}"`);
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) throw new MandateError('FLAG_INVALID', `mandate check: --header must be NAME:VALUE, got "${h}"`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  const body = values.body?.startsWith('@') ? await readFile(values.body.slice(1), 'utf8') : values.body;
  if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';

  const config = configFromFlags(values);
  const { compiled } = await loadCompiled(config, loggerFor(config, { quiet: true }));
  const spiffeId = agentSpiffeId(config.trustDomain, ref.namespace, ref.name);
  const request: CheckRequestObject = {
    attributes: {
      request: {
        http: {
          id: 'offline',
          method: values.method.toUpperCase(),
          host: url.host,
          path: url.pathname + url.search,
          scheme: url.protocol.replace(/:$/, ''),
          headers,
          ...(body !== undefined ? { body } : {}),
        },
      },
    },
  };
  const { outcome } = runCheck({ spiffeId, namespace: ref.namespace, name: ref.name, serial: 'offline' }, request, now, {
    policies: compiled.policies,
    tools: compiled.tools,
    limiter: createLimiterState(),
    killSwitch: config.killSwitch,
    maxBodyBytes: config.authz.maxBodyBytes,
    newId: () => 'offline',
  });
  const d = outcome.decision;
  const explained = {
    identity: spiffeId,
    effect: d.effect,
    reason: d.reason,
    httpStatus: d.effect === 'Allow' ? 200 : d.httpStatus,
    rule: d.rule ?? null,
    message: d.message,
    action: d.classified ? { tool: d.classified.tool, name: d.classified.action, classification: d.classified.classification, params: d.classified.params } : null,
    dryRun: d.dryRun,
    // The header name only: check never prints a secret.
    credentialHeader: outcome.credential ? { header: outcome.credential.header, secret: outcome.credential.secret } : null,
  };
  if (values.json) process.stdout.write(JSON.stringify(explained, null, 2) + '\n');
  else {
    const lines = [
      `${d.effect.toUpperCase()} (${d.reason}${d.effect === 'Allow' ? '' : `, HTTP ${d.httpStatus}`})`,
      `  identity  ${spiffeId}`,
      `  action    ${explained.action ? `${explained.action.name} on ${explained.action.tool} (${explained.action.classification})` : '-'}`,
      `  params    ${explained.action ? JSON.stringify(explained.action.params) : '-'}`,
      `  rule      ${d.rule ? `${d.rule.policy} rule ${d.rule.rule} (generation ${d.rule.generation})` : '-'}`,
      `  message   ${d.message}`,
    ];
    if (outcome.credential) lines.push(`  inject    ${outcome.credential.header} from Secret ${outcome.credential.secret}`);
    for (const r of d.dryRun) lines.push(`  dry-run   ${r.policy}: ${r.effect} (${r.reason}${r.rule ? `, rule ${r.rule.rule}` : ''})`);
    process.stdout.write(lines.join('\n') + '\n');
  }
  return d.effect === 'Allow' ? 0 : 3;
}
