// /metrics, /healthz and /readyz. Liveness says the event loop answers; readiness says this
// replica can decide: a snapshot is loaded and the CA is usable. Nothing here needs auth, so
// nothing here reveals more than Prometheus metrics do; it listens on loopback by default.
import { createServer, type Server } from 'node:http';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import { listenHostPort } from './listen.ts';

export interface ReadinessCheck {
  readonly name: string;
  readonly ok: () => boolean;
}

export interface HttpServerHandle {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(opts: { listen: string; metrics: Metrics; readiness: readonly ReadinessCheck[]; log: Logger }): Promise<HttpServerHandle> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (url.pathname) {
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        const failing = opts.readiness.filter((c) => !c.ok()).map((c) => c.name);
        opts.metrics.ready.set(failing.length === 0 ? 1 : 0);
        if (failing.length === 0) res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
        else res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${failing.join(', ')}\n`);
        return;
      }
      case '/metrics':
        opts.metrics.ready.set(opts.readiness.every((c) => c.ok()) ? 1 : 0);
        opts.metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': opts.metrics.registry.contentType }).end(text),
          (err: unknown) => {
            opts.log.error('metrics rendering failed', { err });
            res.writeHead(500).end();
          },
        );
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  const port = await listenHostPort(server, opts.listen);
  return {
    port,
    close: () => new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}
