// Mandate in a cluster, end to end: two real `mandate serve` replicas (the CLI, as child
// processes) against a real kube-apiserver, each running as a ServiceAccount bound to exactly the
// RBAC the chart ships (see test/harness/kube/mandate-cluster.ts). With an SVID bought by an agent
// pod's bound token, Envoy-protocol Checks go to both replicas; policy edits and the kill switch
// reach the decision of every replica within 1 s (measured and printed); the leader writes status
// and trust bundles; when the leader dies, the standby takes over the Lease.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinationV1Api, EventsV1Api } from '@kubernetes/client-node';
import { countRealApiserverTests } from '../harness/kube/index.ts';
import { CREDENTIAL_VALUE, MANDATE_GROUP, denyReason, isAllowed, startMandateCluster, type MandateCluster } from '../harness/kube/mandate-cluster.ts';

/** Polls `probe` until it holds; returns how long that took. */
async function within(ms: number, what: string, probe: () => Promise<boolean>): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - start;
    if (performance.now() - start > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('mandate serve in a cluster', { timeout: 10 * 60_000 }, () => {
  countRealApiserverTests('cluster.test.ts');
  let mc: MandateCluster;

  before(async () => {
    mc = await startMandateCluster({ replicas: ['a', 'b'] });
  });

  after(async () => {
    await mc?.stop();
  });

  test('an SVID from the identity service is accepted by every replica, which injects the credential', async () => {
    assert.match(mc.svid.cert?.toString() ?? '', /BEGIN CERTIFICATE/);
    for (const client of mc.clients) {
      await within(10_000, 'first sync on the replica', async () => isAllowed(await mc.check(client, '/items/1')));
      const res = await mc.check(client, '/items/1');
      assert.ok(res.ok_response?.headers?.some((h) => h.header.key === 'authorization' && h.header.value === `Bearer ${CREDENTIAL_VALUE}`));
    }
  });

  test('a policy change reaches the decision of every replica within 1 s', async () => {
    assert.equal(denyReason(await mc.check(mc.clients[0]!, '/admin')), 'default-deny');
    const started = performance.now();
    await mc.setRules([{ name: 'read', effect: 'Allow', actions: ['api.items.get', 'api.admin.get'] }]);
    const times = await Promise.all(mc.clients.map((c) => within(1000, 'policy change', async () => isAllowed(await mc.check(c, '/admin'))).then(() => performance.now() - started)));
    console.log(`policy-change-propagation-ms: ${times.map((t) => t.toFixed(0)).join(', ')}`);
  });

  test('the kill switch reaches the decision of every replica within 1 s', async () => {
    const started = performance.now();
    await mc.setSuspended(true);
    const times = await Promise.all(mc.clients.map((c) => within(1000, 'kill switch', async () => denyReason(await mc.check(c, '/items/1')) === 'suspended').then(() => performance.now() - started)));
    console.log(`kill-switch-propagation-ms: ${times.map((t) => t.toFixed(0)).join(', ')}`);
    await mc.setSuspended(false);
    await within(1000, 'lifting the kill switch', async () => isAllowed(await mc.check(mc.clients[0]!, '/items/1')));
  });

  test('the leader writes status: SPIFFE ID and Ready condition on the identity', async () => {
    await within(15_000, 'identity status', async () => {
      const obj = (await mc.custom.getNamespacedCustomObject({ ...MANDATE_GROUP, namespace: mc.agentsNs, plural: 'agentidentities', name: 'worker' })) as {
        status?: { spiffeID?: string; conditions?: { type: string; status: string }[] };
      };
      return obj.status?.spiffeID === `spiffe://cluster.local/ns/${mc.agentsNs}/agent/worker` && obj.status.conditions?.some((c) => c.type === 'Ready') === true;
    });
  });

  test('issuance is reported as a Kubernetes Event on the AgentIdentity', async () => {
    const events = mc.admin.makeApiClient(EventsV1Api);
    await within(10_000, 'an SVIDIssued Event', async () => {
      const list = await events.listNamespacedEvent({ namespace: mc.agentsNs });
      return list.items.some((e) => e.reason === 'SVIDIssued' && e.regarding?.kind === 'AgentIdentity' && e.regarding.name === 'worker' && (e.note ?? '').includes('worker-0'));
    });
  });

  test('when the leader dies, the standby takes the Lease within its duration and keeps serving', async () => {
    const leases = mc.admin.makeApiClient(CoordinationV1Api);
    const holder = async () => (await leases.readNamespacedLease({ name: 'mandate-leader', namespace: mc.mandateNs })).spec?.holderIdentity ?? '';
    await within(15_000, 'a leader', async () => (await holder()).startsWith('replica-'));
    const leader = (await holder()).slice('replica-'.length);
    const standby = leader === 'a' ? 'b' : 'a';
    await mc.replicas.get(leader)!.stop('SIGKILL'); // no chance to release the Lease
    mc.replicas.delete(leader);
    const took = await within(4000 + 3000, 'takeover', async () => (await holder()) === `replica-${standby}`);
    console.log(`leader-takeover-ms: ${took.toFixed(0)} (lease duration 4000 ms; measured from the kill)`);
    assert.ok(isAllowed(await mc.check(mc.clients[standby === 'a' ? 0 : 1]!, '/items/1')));
  });
});
