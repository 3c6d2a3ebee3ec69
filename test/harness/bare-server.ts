// The load benchmark's baseline: a grpc-js ext_authz server with Envoy's own protos and the same
// TLS setup as Mandate (server certificate from a CA, client certificate required), that answers
// every Check with an OK CheckResponse carrying one x-mandate-decision-id header, the same
// shape Mandate's allow answers have, and does nothing else. Mandate's throughput is reported as
// a ratio to this server measured in the same run, so the ratio isolates Mandate's own work
// (identity, classification, policy, audit, metrics) from gRPC, TLS and protobuf costs.
//
// Usage as a script (prints {"port":N} on stdout once listening; stops on SIGINT/SIGTERM):
//   node test/harness/bare-server.ts --ca ca.pem --cert server.pem --key server-key.pem [--port 0]
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { AUTH_PROTO_FILE, AUTH_SERVICE_NAME, authorizationService, envoyProtoIncludeDirs } from '../../controller/src/authz/protos.ts';

/** The same protos Mandate serves (and ghz / grpcurl load with `-proto` and `-import-path`). */
export { AUTH_PROTO_FILE, envoyProtoIncludeDirs };
export const checkMethod = `${AUTH_SERVICE_NAME}/Check`;

export interface BareServerOptions {
  /** Trust bundle for client certificates. */
  readonly caPem: string;
  /** Server certificate chain and key. */
  readonly certPem: string;
  readonly keyPem: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  /** Defaults to 127.0.0.1: load never leaves the machine. */
  readonly host?: string;
}

export interface BareServer {
  readonly port: number;
  /** Number of Check calls answered so far. */
  readonly calls: () => number;
  close(graceMs?: number): Promise<void>;
}

/** The one answer: allow, with a fresh decision id, as Mandate's allow carries. */
export function okResponse(decisionId: string): Record<string, unknown> {
  return {
    status: { code: 0 },
    ok_response: {
      headers: [{ header: { key: 'x-mandate-decision-id', value: decisionId }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    },
  };
}

export async function startBareServer(options: BareServerOptions): Promise<BareServer> {
  const server = new grpc.Server({
    // Same message limit as Mandate's default authz.maxRequestBytes.
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  });
  let calls = 0;
  const check: grpc.handleUnaryCall<unknown, unknown> = (_call, callback) => {
    calls += 1;
    callback(null, okResponse(randomUUID()));
  };
  server.addService(authorizationService(), { Check: check });
  const credentials = grpc.ServerCredentials.createSsl(
    Buffer.from(options.caPem),
    [{ cert_chain: Buffer.from(options.certPem), private_key: Buffer.from(options.keyPem) }],
    true,
  );
  const address = `${options.host ?? '127.0.0.1'}:${options.port ?? 0}`;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, credentials, (err, p) => (err ? reject(new Error(`bare server cannot listen on ${address}: ${err.message}`, { cause: err })) : resolve(p))),
  );
  return {
    port,
    calls: () => calls,
    close: (graceMs = 2_000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
    },
  });
  if (!values.ca || !values.cert || !values.key) {
    throw new Error('usage: node test/harness/bare-server.ts --ca CA.pem --cert SERVER.pem --key SERVER-KEY.pem [--port N] [--host 127.0.0.1]');
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port ${values.port} is not a port number`);
  const [caPem, certPem, keyPem] = await Promise.all([readFile(values.ca, 'utf8'), readFile(values.cert, 'utf8'), readFile(values.key, 'utf8')]);
  const server = await startBareServer({ caPem, certPem, keyPem, port, host: values.host });
  process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
  const stop = (): void => {
    server.close().then(
      () => process.stderr.write(`bare server: stopped after ${server.calls()} checks\n`),
      (err: unknown) => process.stderr.write(`bare server: close failed: ${String(err)}\n`),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
