// The Check handler: run the pure pipeline on the snapshot published at the moment the call
// arrived, write the audit record, and only then answer. If the record cannot be written the
// call fails with a gRPC error (Envoy then denies): no decision is acknowledged without evidence.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { buildAuditRecord } from '../audit/record.ts';
import type { AuditRecordBody } from '../audit/record.ts';
import { MandateError, asMandateError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { KillSwitch } from '../policy/decide.ts';
import type { LimiterState } from '../policy/limits.ts';
import { runCheck } from './check.ts';
import type { Compiled } from './compiled.ts';
import type { CheckRequestObject } from './request.ts';
import { toCheckResponse, type CheckResponseObject } from './response.ts';
import type { CheckHandler } from './server.ts';
import type { PeerIdentity } from './types.ts';

export interface CheckServiceDeps {
  readonly current: () => { readonly compiled: Compiled } | undefined;
  readonly limiter: LimiterState;
  readonly killSwitch: KillSwitch;
  readonly maxBodyBytes: number;
  readonly audit: { append(body: AuditRecordBody): Promise<unknown> };
  readonly metrics: Metrics;
  readonly clock?: () => Date;
}

export function createCheckHandler(deps: CheckServiceDeps): CheckHandler {
  const clock = deps.clock ?? (() => new Date());
  const { metrics } = deps;
  return async (peer: PeerIdentity, raw: unknown): Promise<CheckResponseObject> => {
    const started = performance.now();
    const published = deps.current();
    if (!published) throw new MandateError('NOT_READY', 'no policy snapshot is loaded yet');
    const { input, outcome } = runCheck(peer, raw as CheckRequestObject, clock(), {
      policies: published.compiled.policies,
      tools: published.compiled.tools,
      limiter: deps.limiter,
      killSwitch: deps.killSwitch,
      maxBodyBytes: deps.maxBodyBytes,
      newId: randomUUID,
    });
    const record = buildAuditRecord(input, outcome, { latencyMs: performance.now() - started });
    try {
      await deps.audit.append(record);
    } catch (err) {
      throw asMandateError(err, 'AUDIT_WRITE');
    }
    metrics.auditRecords.inc();
    const { decision } = outcome;
    metrics.decisions.inc({ effect: decision.effect, mode: 'Enforce' });
    metrics.decisionReasons.inc({ reason: decision.reason });
    for (const d of decision.dryRun) metrics.decisions.inc({ effect: d.effect, mode: 'DryRun' });
    metrics.checkDuration.observe((performance.now() - started) / 1000);
    return toCheckResponse(outcome, input.request);
  };
}
