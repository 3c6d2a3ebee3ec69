// The gRPC adapter for envoy.service.auth.v3.Authorization. It does three things only: require
// and read the mTLS peer certificate (the caller's sole source of identity), hand the decoded
// request to the check handler, and map failures to gRPC statuses so Envoy's fail-closed
// setting (failure_mode_allow: false) applies. Everything that decides lives in pure code.
import { TLSSocket, type PeerCertificate } from 'node:tls';
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
  /** Clock for certificate expiry on cached connections (tests). */
  readonly now?: () => number;
}

export interface AuthzServerHandle {
  readonly port: number;
  /** Stops accepting calls and waits for in-flight ones (bounded by `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

// grpc-js re-reads the peer certificate through TLSSocket.getPeerCertificate() on every
// getAuthContext(), which formats the whole certificate and computes three fingerprints: a fifth of
// the CPU of a check under load. Node's HTTP/2 server disables TLS renegotiation on every session
// socket (RFC 7540 §9.2.1), so a connection's peer cannot change: the authenticated identity is
// kept per TLS socket, and only the expiry is checked again on each call. Reaching the socket
// uses grpc-js internals (call.call.stream.session.socket); if they move, every call falls back
// to getAuthContext(), which is slower but equally correct.
interface Authenticated {
  readonly peer: PeerIdentity;
  readonly notAfterMs: number;
}

function connectionSocket(call: unknown): TLSSocket | undefined {
  const socket = (call as { call?: { stream?: { session?: { socket?: unknown } } } }).call?.stream?.session?.socket;
  return socket instanceof TLSSocket && socket.authorized ? socket : undefined;
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

  const now = opts.now ?? Date.now;
  const connections = new WeakMap<TLSSocket, Authenticated>();
  const authenticate = (call: grpc.ServerUnaryCall<unknown, unknown>): PeerIdentity => {
    const socket = connectionSocket(call);
    const known = socket ? connections.get(socket) : undefined;
    if (known) {
      if (now() < known.notAfterMs) return known.peer;
      if (socket) connections.delete(socket);
      throw new MandateError('PEER_UNAUTHENTICATED', 'the client certificate of this connection has expired');
    }
    const cert = call.getAuthContext().sslPeerCertificate;
    if (!cert || !cert.raw) throw new MandateError('PEER_UNAUTHENTICATED', 'no client certificate on this connection');
    const peer = opts.authenticate(cert);
    if (socket) connections.set(socket, { peer, notAfterMs: Date.parse(cert.valid_to) });
    return peer;
  };

  const check: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
    let peer: PeerIdentity;
    try {
      peer = authenticate(call);
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
