// The gRPC adapter for envoy.service.auth.v3.Authorization. It does three things only: require
// and read the mTLS peer certificate (the caller's sole source of identity), hand the decoded
// request to the check handler, and map failures to gRPC statuses so Envoy's fail-closed
// setting (failure_mode_allow: false) applies. Everything that decides lives in pure code.
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import type { PackageDefinition } from '@grpc/proto-loader';
import { asMandateError, MandateError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { PeerIdentity } from './types.ts';
import type { MemoryCertificateProvider } from './cert-provider.ts';

/** Turns the verified peer and a decoded CheckRequest into a CheckResponse object. */
export type CheckHandler = (peer: PeerIdentity, request: unknown) => Promise<unknown>;

export interface AuthzServerOptions {
  readonly listen: string;
  readonly maxRequestBytes: number;
  readonly certificates: MemoryCertificateProvider;
  /** Served by gRPC reflection; its descriptors must be linked (see reflection.ts). */
  readonly packageDefinition: PackageDefinition;
  readonly service: grpc.ServiceDefinition;
  /** Maps the TLS peer certificate to a PeerIdentity, or throws PEER_UNAUTHENTICATED. */
  readonly authenticate: (cert: PeerCertificate) => PeerIdentity;
  readonly handler: CheckHandler;
  readonly log: Logger;
  readonly metrics: Metrics;
}

export interface AuthzServerHandle {
  readonly port: number;
  /** Stops accepting calls and waits for in-flight ones (bounded by `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

const statusFor: Partial<Record<MandateError['code'], grpc.status>> = {
  PEER_UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  NOT_READY: grpc.status.UNAVAILABLE,
  AUDIT_WRITE: grpc.status.UNAVAILABLE,
  REQUEST_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
};

export async function startAuthzServer(opts: AuthzServerOptions): Promise<AuthzServerHandle> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.maxRequestBytes,
    'grpc.max_send_message_length': 1024 * 1024,
    // Envoy keeps long-lived HTTP/2 connections to its ext_authz cluster; allow its pings.
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    'grpc.max_connection_idle_ms': 30 * 60_000,
  });

  const fail = (callback: grpc.sendUnaryData<unknown>, err: MandateError): void => {
    opts.metrics.errors.inc({ code: err.code });
    callback({ code: statusFor[err.code] ?? grpc.status.INTERNAL, details: `${err.code}: ${err.message}` });
  };

  const check: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
    const cert = call.getAuthContext().sslPeerCertificate;
    let peer: PeerIdentity;
    try {
      if (!cert || !cert.raw) throw new MandateError('PEER_UNAUTHENTICATED', 'no client certificate on this connection');
      peer = opts.authenticate(cert);
    } catch (err) {
      const e = asMandateError(err, 'PEER_UNAUTHENTICATED');
      opts.log.warn('check refused: unauthenticated peer', { peer: call.getPeer(), code: e.code, error: e.message });
      fail(callback, e);
      return;
    }
    opts.handler(peer, call.request).then(
      (response) => callback(null, response),
      (err: unknown) => {
        const e = asMandateError(err);
        opts.log.error('check failed', { code: e.code, error: e.message, spiffeId: peer.spiffeId });
        fail(callback, e);
      },
    );
  };

  server.addService(opts.service, { Check: check });
  new ReflectionService(opts.packageDefinition).addToServer(server);

  const credentials = grpc.experimental.createCertificateProviderServerCredentials(opts.certificates, opts.certificates, true);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(opts.listen, credentials, (err, p) => (err ? reject(new MandateError('CONFIG_INVALID', `cannot listen on ${opts.listen}: ${err.message}`)) : resolve(p))),
  );

  return {
    port,
    close: (graceMs = 5_000) =>
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
