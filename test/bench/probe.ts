// Sends every message of the load mix once, with a grpc-js client over the same mTLS setup as
// ghz, and counts what came back. ghz only sees gRPC statuses (a deny is a gRPC OK carrying a
// 403), so without this pass a benchmark that accidentally measured nothing but denials, or
// nothing but errors, would look fine.
import * as grpc from '@grpc/grpc-js';
import { authPackageDefinition } from '../../controller/src/authz/protos.ts';
import type { MixEntry } from './scale.ts';

export interface ProbeTls {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly serverName: string;
}

export interface ProbeMismatch {
  readonly category: string;
  readonly action?: string;
  readonly expected: 'allow' | 'deny';
  readonly got: 'allow' | 'deny' | 'error';
  readonly detail: string;
}

export interface ProbeResult {
  readonly sent: number;
  readonly allowed: number;
  readonly denied: number;
  readonly errors: number;
  /** Allowed answers that carried an x-mandate-decision-id header. */
  readonly withDecisionId: number;
  readonly mismatches: readonly ProbeMismatch[];
}

interface CheckResponseObject {
  status?: { code?: number; message?: string };
  ok_response?: { headers?: { header?: { key?: string; value?: string } }[] };
  denied_response?: { status?: { code?: string | number }; body?: string };
}

type CheckClient = grpc.Client & {
  Check(request: unknown, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, response?: CheckResponseObject) => void): grpc.ClientUnaryCall;
};

function clientConstructor(): new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => CheckClient {
  const loaded = grpc.loadPackageDefinition(authPackageDefinition()) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => CheckClient } } } };
  };
  return loaded.envoy.service.auth.v3.Authorization;
}

export async function probeMix(target: string, tls: ProbeTls, mix: readonly MixEntry[], timeoutMs = 5_000): Promise<ProbeResult> {
  const Client = clientConstructor();
  const credentials = grpc.credentials.createSsl(Buffer.from(tls.caPem), Buffer.from(tls.keyPem), Buffer.from(tls.certPem));
  const client = new Client(target, credentials, { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName });
  let allowed = 0;
  let denied = 0;
  let errors = 0;
  let withDecisionId = 0;
  const mismatches: ProbeMismatch[] = [];
  try {
    // One at a time: this pass checks answers, it does not measure anything.
    for (const entry of mix) {
      const outcome = await new Promise<{ got: 'allow' | 'deny' | 'error'; detail: string; decisionId: boolean }>((resolve) => {
        client.Check(entry.request, { deadline: Date.now() + timeoutMs }, (err, response) => {
          if (err || !response) {
            resolve({ got: 'error', detail: err ? `${grpc.status[err.code]}: ${err.details}` : 'no response', decisionId: false });
            return;
          }
          const code = response.status?.code ?? 0;
          if (code === 0) {
            const decisionId = (response.ok_response?.headers ?? []).some((h) => h.header?.key === 'x-mandate-decision-id' && (h.header.value ?? '') !== '');
            resolve({ got: 'allow', detail: 'OK', decisionId });
          } else {
            resolve({ got: 'deny', detail: `${grpc.status[code] ?? code} ${String(response.denied_response?.status?.code ?? '')} ${(response.denied_response?.body ?? '').slice(0, 300)}`.trim(), decisionId: false });
          }
        });
      });
      if (outcome.got === 'allow') allowed += 1;
      else if (outcome.got === 'deny') denied += 1;
      else errors += 1;
      if (outcome.decisionId) withDecisionId += 1;
      if (outcome.got !== entry.expect) {
        mismatches.push({ category: entry.category, ...(entry.action ? { action: entry.action } : {}), expected: entry.expect, got: outcome.got, detail: outcome.detail });
      }
    }
  } finally {
    client.close();
  }
  return { sent: mix.length, allowed, denied, errors, withDecisionId, mismatches };
}
