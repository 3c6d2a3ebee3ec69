// A real TLS handshake with certificates from Mandate's CA: the server requires and verifies a
// client certificate against the bundle, and peerFromCertificate reads the caller from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { isMandateError } from '../../controller/src/errors.ts';
import { createRootCA, issueServerCert, issueSvid, type CAMaterial } from '../../controller/src/identity/ca.ts';
import { generateKeyPair } from '../../controller/src/identity/keys.ts';
import { privateKeyToPem } from '../../controller/src/identity/pem.ts';
import { peerFromCertificate } from '../../controller/src/identity/peer.ts';
import type { PeerIdentity } from '../../controller/src/authz/types.ts';

const TD = 'cluster.local';
const AGENT = 'spiffe://cluster.local/ns/payments/agent/refund-bot';

interface Credentials {
  readonly cert: string;
  readonly key: string;
}

async function svidFor(ca: CAMaterial, spiffeId: string): Promise<Credentials> {
  const keys = await generateKeyPair();
  const issued = await issueSvid(ca, { spiffeId, publicKey: keys.publicKey, ttlSeconds: 600, now: new Date() });
  return { cert: issued.certPem, key: await privateKeyToPem(keys.privateKey) };
}

interface Harness {
  readonly server: Server;
  readonly port: number;
  /** Identities (or authentication errors) of connections the server accepted. */
  readonly accepted: Array<PeerIdentity | Error>;
  /** Handshakes the server refused. */
  readonly refused: Error[];
}

async function startServer(ca: CAMaterial): Promise<Harness> {
  const keys = await generateKeyPair();
  const serverCert = await issueServerCert(ca, {
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    spiffeId: 'spiffe://cluster.local/ns/mandate/sa/mandate',
    publicKey: keys.publicKey,
    ttlSeconds: 600,
    now: new Date(),
  });
  const accepted: Array<PeerIdentity | Error> = [];
  const refused: Error[] = [];
  const server = createServer(
    { cert: serverCert.certPem, key: await privateKeyToPem(keys.privateKey), ca: ca.bundlePem, requestCert: true, rejectUnauthorized: true },
    (socket: TLSSocket) => {
      try {
        accepted.push(peerFromCertificate(socket.getPeerCertificate(), TD, new Date()));
      } catch (err) {
        accepted.push(err as Error);
      }
      socket.end('ok');
    },
  );
  server.on('tlsClientError', (err) => refused.push(err));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, accepted, refused };
}

/** Connects and reads until the server closes; resolves with what was read or the error. */
async function call(port: number, ca: CAMaterial, creds?: Credentials): Promise<{ data: string; error?: Error }> {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.bundlePem, ...(creds ?? {}) });
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (data += d));
  try {
    await once(socket, 'end');
    return { data };
  } catch (err) {
    return { data, error: err as Error };
  } finally {
    socket.destroy();
  }
}

const ca = await createRootCA({ trustDomain: TD, now: new Date() });
const h = await startServer(ca);
test.after(() => new Promise<void>((resolve) => h.server.close(() => resolve())));

void test('a client with an SVID is accepted and identified from its certificate', async () => {
  const before = h.accepted.length;
  const r = await call(h.port, ca, await svidFor(ca, AGENT));
  assert.equal(r.error, undefined);
  assert.equal(r.data, 'ok');
  assert.equal(h.accepted.length, before + 1);
  const peer = h.accepted.at(-1);
  assert.ok(peer && !(peer instanceof Error), peer instanceof Error ? peer.message : 'no connection recorded');
  assert.equal(peer.spiffeId, AGENT);
  assert.equal(peer.namespace, 'payments');
  assert.equal(peer.name, 'refund-bot');
  assert.match(peer.serial, /^[0-9a-f]+$/);
});

void test('a client with a certificate from another CA is refused by the handshake', async () => {
  const foreign = await createRootCA({ trustDomain: TD, now: new Date() });
  const creds = await svidFor(foreign, AGENT);
  const before = { accepted: h.accepted.length, refused: h.refused.length };
  const refusal = once(h.server, 'tlsClientError');
  const r = await call(h.port, ca, creds);
  await refusal;
  assert.notEqual(r.data, 'ok');
  assert.equal(h.accepted.length, before.accepted);
  // OpenSSL aborts the handshake with an "unknown CA" alert; Node reports it as a reset.
  assert.equal(h.refused.length, before.refused + 1);
});

void test('a client without a certificate is refused by the handshake', async () => {
  const before = { accepted: h.accepted.length, refused: h.refused.length };
  const refusal = once(h.server, 'tlsClientError');
  const r = await call(h.port, ca);
  await refusal;
  assert.notEqual(r.data, 'ok');
  assert.equal(h.accepted.length, before.accepted);
  assert.equal(h.refused.length, before.refused + 1);
  assert.match(h.refused.at(-1)?.message ?? '', /peer did not return a certificate/);
});

void test('a certificate for another trust domain signed by this CA fails its name constraint in the handshake', async () => {
  const forged = await svidFor({ ...ca, trustDomain: 'evil.local' }, 'spiffe://evil.local/ns/payments/agent/refund-bot');
  const before = { accepted: h.accepted.length, refused: h.refused.length };
  const refusal = once(h.server, 'tlsClientError');
  const r = await call(h.port, ca, forged);
  await refusal;
  assert.notEqual(r.data, 'ok');
  assert.equal(h.accepted.length, before.accepted);
  assert.equal(h.refused.length, before.refused + 1);
});

void test('a valid server identity gets through TLS but is not an agent', async () => {
  const before = h.accepted.length;
  const r = await call(h.port, ca, await svidFor(ca, 'spiffe://cluster.local/ns/mandate/sa/mandate'));
  assert.equal(r.data, 'ok');
  const outcome = h.accepted.at(before);
  assert.ok(isMandateError(outcome, 'PEER_UNAUTHENTICATED'), JSON.stringify(outcome));
  assert.match(outcome.message, /not an agent/);
});
