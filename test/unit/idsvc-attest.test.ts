// The attestation decision table, with a fake TokenReview and pod lookup: which tokens get which
// identity, and the clear refusal for each way a token can be wrong.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AgentIdentity } from '../../crds/generated/types.ts';
import { attest, boundTokenFromReview, type AttestationContext } from '../../controller/src/identity/service/attest.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';
import { AUDIENCE, FakeAttestation, identity, snapshotOf, TD, workload, type FakeWorkload } from './idsvc-fakes.ts';

const NOW = new Date('2030-01-01T00:00:00Z');

function ctx(snapshot: Snapshot | undefined | (() => Snapshot | undefined)): AttestationContext {
  return { audience: AUDIENCE, trustDomain: TD, now: NOW, snapshot: typeof snapshot === 'function' ? snapshot : () => snapshot };
}

async function refusal(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string }) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

const billing = identity('payments', 'billing-agent');
const snap = snapshotOf([billing, identity('other', 'helper')]);

describe('attestation: who gets what', () => {
  test('a bound token of the identity ServiceAccount gets that identity', async () => {
    const w = workload('payments', 'billing-agent', 'billing-7f9c');
    const fake = new FakeAttestation().add(w);
    const a = await attest(w.token, ctx(snap), fake);
    assert.equal(a.spiffeId, 'spiffe://cluster.local/ns/payments/agent/billing-agent');
    assert.equal(a.identityName, 'billing-agent');
    assert.deepEqual(a.pod, { name: 'billing-7f9c', uid: 'uid-billing-7f9c' });
    assert.equal(a.serviceAccount, 'billing-agent');
  });

  test('the pod selector picks one of several identities of a ServiceAccount', async () => {
    const s = snapshotOf([
      identity('team', 'planner', { serviceAccount: 'agents', selector: { matchLabels: { role: 'planner' } } }),
      identity('team', 'executor', { serviceAccount: 'agents', selector: { matchLabels: { role: 'executor', tier: 'prod' } } }),
    ]);
    const p = workload('team', 'agents', 'p1', { role: 'planner', extra: 'x' });
    const e = workload('team', 'agents', 'e1', { role: 'executor', tier: 'prod' });
    const fake = new FakeAttestation().add(p).add(e);
    assert.equal((await attest(p.token, ctx(s), fake)).identityName, 'planner');
    assert.equal((await attest(e.token, ctx(s), fake)).identityName, 'executor');
    const staging = workload('team', 'agents', 'e2', { role: 'executor', tier: 'staging' });
    fake.add(staging);
    await refusal(attest(staging.token, ctx(s), fake), 'IDENTITY_UNKNOWN', /selects this pod's labels \(candidates: executor, planner\)/);
  });

  test('two identities matching the same pod is refused, naming both', async () => {
    const s = snapshotOf([identity('team', 'a', { serviceAccount: 'agents' }), identity('team', 'b', { serviceAccount: 'agents', selector: { matchLabels: { app: 'x' } } })]);
    const w = workload('team', 'agents', 'pod', { app: 'x' });
    await refusal(attest(w.token, ctx(s), new FakeAttestation().add(w)), 'IDENTITY_UNKNOWN', /matches 2 AgentIdentities \(a, b\)/);
  });
});

describe('attestation refusals', () => {
  test('a token of another ServiceAccount (no identity for it)', async () => {
    const w = workload('payments', 'default', 'pod');
    await refusal(attest(w.token, ctx(snap), new FakeAttestation().add(w)), 'IDENTITY_UNKNOWN', /^no AgentIdentity for ServiceAccount payments\/default$/);
  });

  test('a token of the same ServiceAccount name in another namespace', async () => {
    const w = workload('elsewhere', 'billing-agent', 'pod');
    await refusal(attest(w.token, ctx(snap), new FakeAttestation().add(w)), 'IDENTITY_UNKNOWN', /no AgentIdentity for ServiceAccount elsewhere\/billing-agent/);
  });

  test('a token for a foreign audience', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    const foreign: FakeWorkload = { ...w, review: { ...w.review, audiences: ['https://kubernetes.default.svc'] } };
    await refusal(
      attest(foreign.token, ctx(snap), new FakeAttestation().add(foreign)),
      'ATTESTATION_FAILED',
      /refused the ServiceAccount token \(TokenReview for audience "mandate"\): token audiences \["https:\/\/kubernetes.default.svc"\] is invalid/,
    );
  });

  test('an authenticated answer without our audience (audience-unaware authenticator)', () => {
    const w = workload('payments', 'billing-agent', 'pod');
    assert.throws(() => boundTokenFromReview({ ...w.review, audiences: [] }, AUDIENCE), /not for audience "mandate"/);
    assert.throws(() => boundTokenFromReview({ authenticated: true, user: w.review.user }, AUDIENCE), /not for audience "mandate"/);
  });

  test('an unbound (legacy Secret) token', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    const legacy: FakeWorkload = { token: 'legacy', review: { ...w.review, user: { ...w.review.user, extra: {} } } };
    await refusal(attest('legacy', ctx(snap), new FakeAttestation().add(legacy)), 'ATTESTATION_FAILED', /not bound to a pod/);
  });

  test('a token that is not a ServiceAccount', async () => {
    const user: FakeWorkload = { token: 'user', review: { authenticated: true, audiences: [AUDIENCE], user: { username: 'alice@example.com' } } };
    await refusal(attest('user', ctx(snap), new FakeAttestation().add(user)), 'ATTESTATION_FAILED', /belongs to "alice@example.com", not to a ServiceAccount/);
  });

  test('an invalid token', async () => {
    await refusal(attest('not-a-known-token', ctx(snap), new FakeAttestation()), 'ATTESTATION_FAILED', /invalid bearer token/);
  });

  test('a deleted pod', async () => {
    const w = workload('payments', 'billing-agent', 'gone');
    await refusal(attest(w.token, ctx(snap), new FakeAttestation().add({ token: w.token, review: w.review })), 'ATTESTATION_FAILED', /pod payments\/gone that the token is bound to no longer exists/);
  });

  test('a pod replaced under the same name', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    const fake = new FakeAttestation().add(w);
    fake.pods.set('payments/pod', { ...(w.pod as NonNullable<FakeWorkload['pod']>), uid: 'uid-new' });
    await refusal(attest(w.token, ctx(snap), fake), 'ATTESTATION_FAILED', /was replaced/);
  });

  test('a pod running as another ServiceAccount than the token', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    const fake = new FakeAttestation().add(w);
    fake.pods.set('payments/pod', { ...(w.pod as NonNullable<FakeWorkload['pod']>), serviceAccountName: 'default' });
    await refusal(attest(w.token, ctx(snap), fake), 'ATTESTATION_FAILED', /runs as ServiceAccount default, but the token is for billing-agent/);
  });

  test('a pod that is terminating or finished', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    const fake = new FakeAttestation().add(w);
    const pod = w.pod as NonNullable<FakeWorkload['pod']>;
    fake.pods.set('payments/pod', { ...pod, deletionTimestamp: NOW.toISOString() });
    await refusal(attest(w.token, ctx(snap), fake), 'ATTESTATION_FAILED', /being deleted/);
    fake.pods.set('payments/pod', { ...pod, phase: 'Succeeded' });
    await refusal(attest(w.token, ctx(snap), fake), 'ATTESTATION_FAILED', /has finished \(Succeeded\)/);
  });

  test('a suspended identity, an expired one, and an unreadable expiry', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    const fake = new FakeAttestation().add(w);
    const with_ = (spec: Partial<AgentIdentity['spec']>): Snapshot => snapshotOf([identity('payments', 'billing-agent', spec)]);
    await refusal(attest(w.token, ctx(with_({ suspended: true })), fake), 'IDENTITY_SUSPENDED', /is suspended/);
    await refusal(attest(w.token, ctx(with_({ expiresAt: '2029-12-31T23:59:59Z' })), fake), 'IDENTITY_SUSPENDED', /expired at 2029-12-31T23:59:59Z/);
    await refusal(attest(w.token, ctx(with_({ expiresAt: 'soon' })), fake), 'IDENTITY_SUSPENDED', /expired at soon/);
    assert.equal((await attest(w.token, ctx(with_({ expiresAt: '2030-01-02T00:00:00Z' })), fake)).identityName, 'billing-agent');
  });

  test('a kill switch flipped while the TokenReview was in flight counts', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    let current = snap;
    const fake = new FakeAttestation().add(w);
    fake.afterReview = () => {
      current = snapshotOf([identity('payments', 'billing-agent', { suspended: true })]);
    };
    await refusal(attest(w.token, ctx(() => current), fake), 'IDENTITY_SUSPENDED', /suspended/);
  });

  test('no identities loaded yet: NOT_READY, and no TokenReview is spent', async () => {
    const w = workload('payments', 'billing-agent', 'pod');
    const fake = new FakeAttestation().add(w);
    await refusal(attest(w.token, ctx(undefined), fake), 'NOT_READY', /not loaded/);
    assert.equal(fake.reviewCalls, 0);
  });

  test('tokens that cannot be ServiceAccount tokens never reach the API server', async () => {
    const fake = new FakeAttestation();
    await refusal(attest('', ctx(snap), fake), 'ATTESTATION_FAILED', /no ServiceAccount token/);
    await refusal(attest('a'.repeat(17_000), ctx(snap), fake), 'ATTESTATION_FAILED', /longer than/);
    await refusal(attest('abc def', ctx(snap), fake), 'ATTESTATION_FAILED', /characters/);
    assert.equal(fake.reviewCalls, 0);
  });
});
