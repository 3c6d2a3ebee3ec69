// JWT-SVIDs and their signing keys: claims as specified, verification with jose against the
// served JWKS (current and previous key), kids that are RFC 7638 thumbprints, rotation by age
// through the Secret with compare-and-swap, and replicas that pick up a rotation.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { silentLogger } from '../../controller/src/log.ts';
import { ClusterJwtKeys } from '../../controller/src/identity/cluster/jwt-keys.ts';
import {
  JWT_KEYS_SECRET_KEY,
  JWT_KEYS_SECRET_NAME,
  jwksOf,
  needsRotation,
  newKeySet,
  newSigningKey,
  parseKeySet,
  rotateKeySet,
  serializeKeySet,
} from '../../controller/src/identity/cluster/jwt-keyset.ts';
import type { Attestation } from '../../controller/src/identity/service/attest.ts';
import { discoveryDocument, jwtSvidTtlSeconds, MAX_JWT_SVID_TTL_SECONDS, mintJwtSvid } from '../../controller/src/identity/service/jwt-svid.ts';
import type { AgentIdentity } from '../../crds/generated/types.ts';
import { FakeSecrets, identity, until } from './idsvc-fakes.ts';

const ISSUER = 'https://mandate.mandate.svc';
const NS = 'mandate';

function attestationFor(id: AgentIdentity): Attestation {
  return {
    namespace: id.metadata.namespace ?? 'default',
    serviceAccount: id.spec.serviceAccount,
    pod: { name: 'pod-1', uid: '6f1c0a4e-0000-4000-8000-000000000001' },
    identity: id,
    identityName: id.metadata.name,
    spiffeId: `spiffe://cluster.local/ns/${id.metadata.namespace ?? 'default'}/agent/${id.metadata.name}`,
  };
}

describe('JWT-SVID claims', () => {
  test('sub, one aud, iat/exp, jti, agent, version, instance; verifies with jose against the JWKS', async () => {
    const set = await newKeySet(new Date());
    const key = set.keys[0];
    assert.ok(key);
    const now = new Date();
    const id = identity('payments', 'billing-agent', { version: '1.4.2', tokenTTL: '5m' });
    const jwt = await mintJwtSvid({ attestation: attestationFor(id), audience: 'https://api.example.com', issuer: ISSUER, key, now });
    const { payload, protectedHeader } = await jwtVerify(jwt.token, createLocalJWKSet(jwksOf(set)), { issuer: ISSUER, audience: 'https://api.example.com', algorithms: ['ES256'] });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.kid, key.kid);
    assert.equal(payload.sub, 'spiffe://cluster.local/ns/payments/agent/billing-agent');
    assert.equal(payload.aud, 'https://api.example.com', 'exactly one audience, as a string');
    assert.equal(payload.agent, 'payments/billing-agent');
    assert.equal(payload.version, '1.4.2');
    assert.equal(payload.instance, '6f1c0a4e-0000-4000-8000-000000000001');
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 300);
    assert.equal(payload.iat, Math.floor(now.getTime() / 1000));
  });

  test('exp is at most 15 minutes, at most tokenTTL, and never past expiresAt', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    assert.equal(jwtSvidTtlSeconds(attestationFor(identity('a', 'b')), now), 300, 'CRD default');
    assert.equal(jwtSvidTtlSeconds(attestationFor(identity('a', 'b', { tokenTTL: '2m' })), now), 120);
    assert.equal(jwtSvidTtlSeconds(attestationFor(identity('a', 'b', { tokenTTL: '1h' })), now), MAX_JWT_SVID_TTL_SECONDS);
    assert.equal(jwtSvidTtlSeconds(attestationFor(identity('a', 'b', { tokenTTL: '15m', expiresAt: '2030-01-01T00:01:00Z' })), now), 60);
    assert.throws(() => jwtSvidTtlSeconds(attestationFor(identity('a', 'b', { expiresAt: '2029-01-01T00:00:00Z' })), now), /expired/);
  });

  test('audience must be exactly one sensible string', async () => {
    const key = (await newKeySet(new Date())).keys[0];
    assert.ok(key);
    const base = { attestation: attestationFor(identity('a', 'b')), issuer: ISSUER, key, now: new Date() };
    await assert.rejects(mintJwtSvid({ ...base, audience: ['a', 'b'] }), /exactly one audience/);
    await assert.rejects(mintJwtSvid({ ...base, audience: '' }), /non-empty/);
    await assert.rejects(mintJwtSvid({ ...base, audience: 'x\ny' }), /control characters/);
    await assert.rejects(mintJwtSvid({ ...base, audience: 'a'.repeat(513) }), /longer than/);
    await assert.rejects(mintJwtSvid({ ...base, audience: 7 }), /non-empty string/);
  });

  test('a token for one audience does not verify for another', async () => {
    const set = await newKeySet(new Date());
    const key = set.keys[0];
    assert.ok(key);
    const jwt = await mintJwtSvid({ attestation: attestationFor(identity('a', 'b')), audience: 'svc-a', issuer: ISSUER, key, now: new Date() });
    await assert.rejects(jwtVerify(jwt.token, createLocalJWKSet(jwksOf(set)), { issuer: ISSUER, audience: 'svc-b' }), /aud/);
  });

  test('OIDC discovery names the issuer, the JWKS and ES256', () => {
    assert.deepEqual(
      { ...discoveryDocument(ISSUER), claims_supported: undefined },
      {
        issuer: ISSUER,
        jwks_uri: `${ISSUER}/keys`,
        id_token_signing_alg_values_supported: ['ES256'],
        subject_types_supported: ['public'],
        response_types_supported: ['id_token'],
        claims_supported: undefined,
      },
    );
  });
});

describe('signing key set', () => {
  test('kid is the RFC 7638 thumbprint; the JWKS holds public keys only', async () => {
    const set = await newKeySet(new Date());
    const [key] = set.keys;
    assert.ok(key);
    const jwks = jwksOf(set);
    const pub = jwks.keys[0] as JWK;
    assert.equal(key.kid, await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: pub.x, y: pub.y }, 'sha256'));
    assert.equal(pub.kid, key.kid);
    assert.equal(pub.alg, 'ES256');
    assert.equal(pub.use, 'sig');
    assert.equal(pub.d, undefined);
    assert.ok(!JSON.stringify(jwks).includes(String(key.privateJwk.d)));
  });

  test('serialize → parse round-trips; a tampered kid or key is refused', async () => {
    const t0 = new Date('2030-01-01T00:00:00Z');
    const set = rotateKeySet(await newKeySet(t0), await newSigningKey(new Date(t0.getTime() + 1000)));
    const text = serializeKeySet(set);
    const back = await parseKeySet(text, 'Secret x/y');
    assert.deepEqual(back.keys.map((k) => k.kid), set.keys.map((k) => k.kid));
    const doc = JSON.parse(text) as { keys: { kid: string; jwk: JWK }[] };
    const swapped = JSON.parse(text) as typeof doc;
    (swapped.keys[0] as { kid: string }).kid = (doc.keys[1] as { kid: string }).kid;
    await assert.rejects(parseKeySet(JSON.stringify(swapped), 'Secret x/y'), /thumbprint/);
    await assert.rejects(parseKeySet('{"keys":[]}', 'Secret x/y'), /holds no keys/);
    await assert.rejects(parseKeySet('nope', 'Secret x/y'), /not JSON/);
    const rsa = JSON.parse(text) as typeof doc;
    (rsa.keys[0] as { jwk: JWK }).jwk = { kty: 'RSA', n: 'x', e: 'AQAB', d: 'y' };
    await assert.rejects(parseKeySet(JSON.stringify(rsa), 'Secret x/y'), /not an EC P-256 private JWK/);
  });

  test('rotation keeps the current and the previous key; needsRotation goes by age', async () => {
    const t0 = new Date('2030-01-01T00:00:00Z');
    const day = 24 * 3600 * 1000;
    let set = await newKeySet(t0);
    assert.equal(needsRotation(set, new Date(t0.getTime() + day - 1)), false);
    assert.equal(needsRotation(set, new Date(t0.getTime() + day)), true);
    const first = set.keys[0]?.kid;
    set = rotateKeySet(set, await newSigningKey(new Date(t0.getTime() + day)));
    const second = set.keys[0]?.kid;
    set = rotateKeySet(set, await newSigningKey(new Date(t0.getTime() + 2 * day)));
    assert.equal(set.keys.length, 2);
    assert.equal(set.keys[1]?.kid, second);
    assert.ok(!set.keys.some((k) => k.kid === first), 'the key two rotations back is gone');
  });

  test('a token signed before a rotation still verifies against the JWKS after it', async () => {
    let set = await newKeySet(new Date());
    const old = set.keys[0];
    assert.ok(old);
    const jwt = await mintJwtSvid({ attestation: attestationFor(identity('a', 'b')), audience: 'svc', issuer: ISSUER, key: old, now: new Date() });
    set = rotateKeySet(set, await newSigningKey(new Date()));
    assert.notEqual(set.keys[0]?.kid, old.kid);
    await jwtVerify(jwt.token, createLocalJWKSet(jwksOf(set)), { issuer: ISSUER, audience: 'svc' });
    set = rotateKeySet(set, await newSigningKey(new Date()));
    await assert.rejects(jwtVerify(jwt.token, createLocalJWKSet(jwksOf(set)), { issuer: ISSUER, audience: 'svc' }), /no applicable key|JWKSNoMatchingKey/);
  });
});

describe('ClusterJwtKeys (Secret-backed)', () => {
  const running: ClusterJwtKeys[] = [];
  const make = (secrets: FakeSecrets, clock?: () => Date): ClusterJwtKeys => {
    const k = new ClusterJwtKeys({ client: secrets, namespace: NS, log: silentLogger, resyncMs: 60_000, ...(clock ? { clock } : {}) });
    running.push(k);
    k.start();
    return k;
  };
  after(async () => {
    await Promise.all(running.map((k) => k.stop()));
  });

  test('the first replica creates the Secret; the second uses it', async () => {
    const secrets = new FakeSecrets();
    const a = make(secrets);
    await a.whenReady();
    const b = make(secrets);
    await b.whenReady();
    assert.equal(secrets.calls.createdOk, 1);
    assert.equal(a.signer()?.kid, b.signer()?.kid);
    assert.ok(secrets.peek(NS, JWT_KEYS_SECRET_NAME)?.data.has(JWT_KEYS_SECRET_KEY));
    assert.equal(a.readiness.ok(), true);
  });

  test('the leader rotates; the other replica picks it up through the watch and serves both keys', async () => {
    const secrets = new FakeSecrets();
    let now = new Date('2030-01-01T00:00:00Z');
    const leader = make(secrets, () => now);
    await leader.whenReady();
    const replica = make(secrets, () => now);
    await replica.whenReady();
    await until(() => secrets.openWatches() === 2, 2000, 'both watches');
    const before = leader.signer()?.kid;
    assert.equal(leader.needsRotation(), false);
    now = new Date(now.getTime() + 25 * 3600 * 1000);
    assert.equal(leader.needsRotation(), true);
    const r = await leader.rotate();
    assert.equal(r.rotated, true);
    assert.notEqual(r.kid, before);
    assert.equal(leader.signer()?.kid, r.kid);
    assert.equal(leader.needsRotation(), false);
    await until(() => replica.signer()?.kid === r.kid, 2000, 'replica to see the rotation');
    assert.deepEqual(replica.jwks()?.keys.map((k) => k.kid), [r.kid, before]);
  });

  test('a stale would-be leader adopts a rotation made by another instead of rotating again', async () => {
    const secrets = new FakeSecrets();
    const a = make(secrets);
    await a.whenReady();
    // b never hears of changes: its view stays stale.
    secrets.silent = true;
    const b = make(secrets);
    await b.whenReady();
    const r1 = await a.rotate();
    assert.equal(r1.rotated, true);
    const r2 = await b.rotate();
    assert.deepEqual(r2, { rotated: false, kid: r1.kid });
    assert.equal(b.signer()?.kid, r1.kid);
    const stored = await parseKeySet(secrets.peek(NS, JWT_KEYS_SECRET_NAME)?.data.get(JWT_KEYS_SECRET_KEY) ?? '', 'x');
    assert.equal(stored.keys.length, 2);
  });

  test('a tampered Secret is refused and the last good keys stay in use', async () => {
    const secrets = new FakeSecrets();
    const a = make(secrets);
    await a.whenReady();
    await until(() => secrets.openWatches() === 1, 2000, 'watch');
    const kid = a.signer()?.kid;
    secrets.put(NS, JWT_KEYS_SECRET_NAME, { [JWT_KEYS_SECRET_KEY]: '{"keys":[{"kid":"x"}]}' });
    await until(() => a.lastError() !== undefined, 2000, 'the bad update to be seen');
    assert.equal(a.signer()?.kid, kid);
    assert.match(a.lastError()?.message ?? '', /not an EC P-256 private JWK/);
    const header = decodeProtectedHeader(
      await mintJwtSvid({ attestation: attestationFor(identity('a', 'b')), audience: 'x', issuer: ISSUER, key: a.signer() ?? assert.fail(), now: new Date() }).then((j) => j.token),
    );
    assert.equal(header.kid, kid);
  });
});
