// JSON calls to the API server over a keep-alive connection pool, for the two calls on the
// issuance path (TokenReview, pod GET). @kubernetes/client-node 2.0's typed clients build a new
// undici dispatcher for every request, so each call pays a fresh TCP and TLS handshake; on the
// issuance path that is two handshakes per certificate, which measured as about half of the
// issuance latency (test/bench/identity.bench.ts). Credentials still come from the KubeConfig on
// every request (applyToHTTPSOptions), so a rotated ServiceAccount token or client certificate is
// picked up: the pool is rebuilt when the TLS material changes.
import { Agent, request, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { MandateError } from '../../errors.ts';

export const KUBE_REQUEST_TIMEOUT_MS = 10_000;

/** A non-2xx answer, shaped like client-node's ApiException (`code`, `body`) for kube-errors.ts. */
export class KubeHttpError extends Error {
  readonly code: number;
  readonly body: string;
  constructor(code: number, body: string) {
    super(`HTTP ${code}`);
    this.name = 'KubeHttpError';
    this.code = code;
    this.body = body;
  }
}

type TlsMaterial = Pick<RequestOptions, 'ca' | 'cert' | 'key' | 'pfx' | 'passphrase' | 'rejectUnauthorized' | 'servername'>;

function sameTls(a: TlsMaterial, b: TlsMaterial): boolean {
  const eq = (x: unknown, y: unknown): boolean => (Buffer.isBuffer(x) && Buffer.isBuffer(y) ? x.equals(y) : x === y);
  return eq(a.ca, b.ca) && eq(a.cert, b.cert) && eq(a.key, b.key) && eq(a.pfx, b.pfx) && a.passphrase === b.passphrase && a.rejectUnauthorized === b.rejectUnauthorized && a.servername === b.servername;
}

export interface KubeJsonClient {
  call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown>;
  close(): void;
}

export function kubeJsonClient(kc: KubeConfig, options: { maxSockets?: number; timeoutMs?: number } = {}): KubeJsonClient {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new MandateError('CONFIG_INVALID', 'the Kubernetes client configuration names no API server');
  const base = new URL(server);
  if (base.protocol !== 'https:') throw new MandateError('CONFIG_INVALID', `the API server must be reached over https, got ${base.protocol}`);
  let pool: { agent: Agent; tls: TlsMaterial } | undefined;

  const agentFor = (tls: TlsMaterial): Agent => {
    if (pool && sameTls(pool.tls, tls)) return pool.agent;
    pool?.agent.destroy();
    pool = { tls, agent: new Agent({ ...tls, keepAlive: true, maxSockets: options.maxSockets ?? 32, maxFreeSockets: 8 }) };
    return pool.agent;
  };

  return {
    async call(method, path, body) {
      const opts: RequestOptions = { headers: {} };
      await kc.applyToHTTPSOptions(opts);
      const tls: TlsMaterial = { ca: opts.ca, cert: opts.cert, key: opts.key, pfx: opts.pfx, passphrase: opts.passphrase, rejectUnauthorized: opts.rejectUnauthorized, servername: opts.servername };
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers: Record<string, string> = { accept: 'application/json' };
      for (const [k, v] of Object.entries(opts.headers ?? {})) if (v !== undefined) headers[k] = String(v);
      if (payload !== undefined) headers['content-type'] = 'application/json';
      const url = new URL(path.replace(/^\//, ''), base.href.endsWith('/') ? base.href : `${base.href}/`);
      return new Promise((resolve, reject) => {
        const req = request(
          url,
          { method, headers, agent: agentFor(tls), ...(opts.auth ? { auth: opts.auth } : {}), timeout: options.timeoutMs ?? KUBE_REQUEST_TIMEOUT_MS },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              const status = res.statusCode ?? 0;
              if (status < 200 || status > 299) {
                reject(new KubeHttpError(status, text));
                return;
              }
              try {
                resolve(JSON.parse(text));
              } catch {
                reject(new Error(`the API server answered ${path} with something that is not JSON`));
              }
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error(`${method} ${url.pathname} timed out after ${options.timeoutMs ?? KUBE_REQUEST_TIMEOUT_MS} ms`)));
        req.on('error', reject);
        req.end(payload);
      });
    },
    close() {
      pool?.agent.destroy();
      pool = undefined;
    },
  };
}
