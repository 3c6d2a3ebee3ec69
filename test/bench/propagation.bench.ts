// How long a change made through the Kubernetes API takes to reach the authz decision of every
// replica: two `mandate serve` replicas on a real kube-apiserver (test/harness/kube), a policy
// flipped N times and the kill switch toggled N times; each sample is the time from the API
// write being acknowledged to the first Check on each replica that shows the new decision.
// The requirement (issue 3) is under 1 s. The baseline, measured in the same run, is one Check
// round trip: the resolution of the measurement itself.
//
//   node test/bench/propagation.bench.ts [--samples 20]
import { parseArgs } from 'node:util';
import { denyReason, isAllowed, startMandateCluster, type CheckResult } from '../harness/kube/mandate-cluster.ts';
import type { CheckClient } from '../harness/envoy-client.ts';

const { values } = parseArgs({ options: { samples: { type: 'string', default: '20' } } });
const SAMPLES = Number(values.samples);

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};
const row = (name: string, xs: number[]) => `| ${name} | ${xs.length} | ${quantile(xs, 0.5).toFixed(1)} | ${quantile(xs, 0.95).toFixed(1)} | ${Math.max(...xs).toFixed(1)} |`;

const mc = await startMandateCluster({ replicas: ['a', 'b'] });
try {
  const check = (c: CheckClient, path: string): Promise<CheckResult> => mc.check(c, path);
  for (const c of mc.clients) while (!isAllowed(await check(c, '/items/1')));

  /** Writes, then polls every replica until `seen` holds there; one sample per replica. */
  const measure = async (write: () => Promise<void>, path: string, seen: (r: CheckResult) => boolean, into: number[]) => {
    await write();
    const acked = performance.now();
    await Promise.all(
      mc.clients.map(async (c) => {
        for (const deadline = acked + 5000; !seen(await check(c, path)); ) if (performance.now() > deadline) throw new Error('no propagation within 5 s');
        into.push(performance.now() - acked);
      }),
    );
  };
  const rtt: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await check(mc.clients[0]!, '/items/1');
    rtt.push(performance.now() - t);
  }
  const policy: number[] = [];
  const kill: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const open = i % 2 === 0;
    await measure(() => mc.setRules([{ name: 'read', effect: 'Allow', actions: open ? ['api.items.get', 'api.admin.get'] : ['api.items.get'] }]), '/admin', (r) => isAllowed(r) === open, policy);
    const suspend = i % 2 === 0;
    await measure(() => mc.setSuspended(suspend), '/items/1', (r) => (suspend ? denyReason(r) === 'suspended' : isAllowed(r)), kill);
  }
  console.log(`Two replicas, ${SAMPLES} changes of each kind; milliseconds from the API write's acknowledgement to the new decision, per replica.\n`);
  console.log('| what | samples | p50 ms | p95 ms | max ms |');
  console.log('|---|---:|---:|---:|---:|');
  console.log(row('baseline: one Check round trip', rtt));
  console.log(row('AgentPolicy change', policy));
  console.log(row('kill switch (spec.suspended)', kill));
  console.log(`\nRequirement: under 1,000 ms on every replica: ${Math.max(...policy, ...kill) < 1000 ? 'met' : '**not met**'}.`);
} finally {
  await mc.stop();
}
