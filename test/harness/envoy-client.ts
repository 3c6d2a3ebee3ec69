// A real gRPC client for envoy.service.auth.v3.Authorization, built from Envoy's own protos as
// the installed @grpc/grpc-js-xds package ships them, speaking mTLS like an Envoy sidecar would.
import * as grpc from '@grpc/grpc-js';
import { authPackageDefinition } from '../../controller/src/authz/protos.ts';

export interface TlsFiles {
  readonly ca: string | Buffer;
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

export interface CheckClient {
  check(request: unknown, deadlineMs?: number): Promise<Record<string, unknown>>;
  close(): void;
}

type Ctor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => grpc.Client & {
  Check(req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void): void;
};

export function authorizationClient(port: number, tls: TlsFiles, host = '127.0.0.1'): CheckClient {
  const pkg = grpc.loadPackageDefinition(authPackageDefinition()) as unknown as { envoy: { service: { auth: { v3: { Authorization: Ctor } } } } };
  const buf = (v: string | Buffer | undefined) => (v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v));
  const creds = grpc.credentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert));
  const client = new pkg.envoy.service.auth.v3.Authorization(`${host}:${port}`, creds, { 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  return {
    check: (request, deadlineMs = 10_000) =>
      new Promise((resolve, reject) =>
        client.Check(request, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res))),
      ),
    close: () => client.close(),
  };
}

/** A CheckRequest as Envoy's HTTP ext_authz filter sends it (proto-loader object form). */
export function httpCheckRequest(r: { method: string; host: string; path: string; headers?: Record<string, string>; body?: string }): unknown {
  return {
    attributes: {
      source: { principal: 'spiffe://cluster.local/ns/agents/agent/ignored-by-mandate' },
      request: {
        time: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 },
        http: {
          id: String(Math.floor(Math.random() * 1e12)),
          method: r.method,
          host: r.host,
          path: r.path,
          scheme: 'https',
          protocol: 'HTTP/1.1',
          headers: { ':authority': r.host, ':method': r.method, ':path': r.path, ...(r.headers ?? {}) },
          ...(r.body !== undefined ? { body: r.body, size: String(Buffer.byteLength(r.body)) } : {}),
        },
      },
    },
  };
}
