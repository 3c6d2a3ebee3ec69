// Identity issuance cost against a real kube-apiserver (test/harness/kube): X.509-SVIDs and
// JWT-SVIDs through the HTTPS identity service, attestation included (a TokenReview and a pod GET
// per request, as the controller's least-privilege ServiceAccount). The baseline, measured in the
// same run on the same API server, is that attestation alone (TokenReview + pod GET from Node), so
// the ratio shows what Mandate adds on top of the API server round trips it cannot avoid.
//
// Latency: sequential requests on one keep-alive connection (p50/p95/p99). Throughput: `--concurrency`
// clients (one connection each) for `--requests` requests. CSRs are made before timing starts: key
// generation happens in the agent, not in the service.
//
//   node test/bench/identity.bench.ts [--requests 400] [--concurrency 16] [--warmup 50] [--json]
import { Agent, request } from 'node:https';
import { parseArgs } from 'node:util';
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { buildConfig } from '../../controller/src/config.ts';
import { applyChartRbac } from '../../controller/src/reconcile/rbac.ts';
import { kubeAttestationPorts } from '../../controller/src/identity/service/kube-attest.ts';
import { createClusterIdentity } from '../../controller/src/identity/service/cluster-identity.ts';
import { ECDSA_SHA256, wc } from '../../controller/src/identity/keys.ts';
import { Pkcs10CertificateRequestGenerator } from '../../controller/src/identity/x509.ts';
import { createLogger } from '../../controller/src/log.ts';
import { createMetrics } from '../../controller/src/metrics.ts';
import type { Snapshot } from '../../controller/src/store/snapshot.ts';
import type { AgentIdentity } from '../../crds/generated/types.ts';
import { applyCrds, createNamespace, loadKubeConfig, startControlPlane, uniqueNamespace } from '../harness/kube/index.ts';

const { values: flags } = parseArgs({
  options: {
    requests: { type: 'string', default: '400' },
    concurrency: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '50' },
    json: { type: 'boolean', default: false },
  },
});
const REQUESTS = Number(flags.requests);
const CONCURRENCY = Number(flags.concurrency);
const WARMUP = Number(flags.warmup);
const say = (line: string): void => {
  process.stderr.write(`identity-bench: ${line}\n`);
};

interface Stats {
  readonly n: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly mean: number;
}

function stats(samplesMs: number[]): Stats {
  const s = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { n: s.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const cp = await startControlPlane({ log: say });
try {
  const admin = cp.adminKubeConfig();
  const core = admin.makeApiClient(CoreV1Api);
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  await applyCrds(admin);
  const mandateNs = await createNamespace(admin, uniqueNamespace('mandate'));
  const agentsNs = await createNamespace(admin, uniqueNamespace('agents'));

  // The controller's least privilege: exactly the RBAC the chart ships (no Secrets outside its own namespace).
  await core.createNamespacedServiceAccount({ namespace: mandateNs, body: { metadata: { name: 'mandate' } } });
  await applyChartRbac(rbac, { namespace: mandateNs, serviceAccount: 'mandate', credentials: { namespaces: [] } });
  const controllerKc = loadKubeConfig(await cp.serviceAccountKubeconfig(mandateNs, 'mandate', { expirationSeconds: 3600 }));

  // One identity, CONCURRENCY pods, one bound token per pod.
  await core.createNamespacedServiceAccount({ namespace: agentsNs, body: { metadata: { name: 'agent' } } });
  const identity: AgentIdentity = {
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentIdentity',
    metadata: { name: 'agent', namespace: agentsNs },
    spec: { owner: 'bench@example.com', serviceAccount: 'agent', certificateTTL: '1h', tokenTTL: '5m' },
  };
  const snapshot: Snapshot = {
    revision: 1,
    loadedAt: new Date().toISOString(),
    source: 'bench',
    identities: new Map([[`${agentsNs}/agent`, identity]]),
    policies: new Map(),
    tools: new Map(),
    secrets: new Map(),
  };
  const tokens: string[] = [];
  const pods: string[] = [];
  for (let i = 0; i < CONCURRENCY; i++) {
    const pod = await core.createNamespacedPod({
      namespace: agentsNs,
      body: { metadata: { name: `agent-${i}` }, spec: { serviceAccountName: 'agent', containers: [{ name: 'app', image: 'registry.example/agent:1' }] } },
    });
    const tr = await core.createNamespacedServiceAccountToken({
      namespace: agentsNs,
      name: 'agent',
      body: { spec: { audiences: ['mandate'], expirationSeconds: 3600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: `agent-${i}`, uid: pod.metadata?.uid ?? '' } } },
    });
    tokens.push(tr.status?.token ?? '');
    pods.push(`agent-${i}`);
  }

  const config = buildConfig({}, { cluster: { namespace: mandateNs }, identityService: { listen: '127.0.0.1:0' } });
  const metrics = createMetrics({ defaultMetrics: false });
  const cluster = createClusterIdentity({ config, kubeConfig: controllerKc, snapshot: () => snapshot, log: createLogger({ level: 'warn' }), metrics });
  const server = await cluster.start();
  const bundle = cluster.ca.current()?.material.bundlePem ?? '';
  const servername = `mandate.${mandateNs}.svc`;

  const csrs: string[] = [];
  for (let i = 0; i < 64; i++) {
    const keys = await wc.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    csrs.push((await Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: ECDSA_SHA256 }, wc)).toString('pem'));
  }

  const post = (agent: Agent, path: string, token: string, body: unknown): Promise<void> =>
    new Promise((resolve, reject) => {
      const payload = JSON.stringify(body);
      const req = request(
        { host: '127.0.0.1', port: server.port, servername, ca: bundle, agent, method: 'POST', path, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${path}: HTTP ${res.statusCode ?? 0}`))));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });

  const ports = kubeAttestationPorts(controllerKc);
  const attestOnly = async (i: number): Promise<void> => {
    const status = await ports.reviewToken(tokens[i % tokens.length] ?? '', 'mandate');
    if (!status.authenticated) throw new Error('baseline TokenReview failed');
    if (!(await ports.getPod(agentsNs, pods[i % pods.length] ?? ''))) throw new Error('baseline pod GET failed');
  };
  const svid = (agent: Agent, i: number): Promise<void> => post(agent, '/v1/svid', tokens[i % tokens.length] ?? '', { csr: csrs[i % csrs.length] });
  const jwt = (agent: Agent, i: number): Promise<void> => post(agent, '/v1/jwt', tokens[i % tokens.length] ?? '', { audience: 'https://bench.example.com' });

  async function sequential(fn: (i: number) => Promise<void>): Promise<Stats> {
    for (let i = 0; i < WARMUP; i++) await fn(i);
    const samples: number[] = [];
    for (let i = 0; i < REQUESTS; i++) samples.push(await timed(() => fn(i)));
    return stats(samples);
  }

  async function throughput(fn: (agent: Agent, i: number) => Promise<void>): Promise<{ perSecond: number; stats: Stats }> {
    const agents = Array.from({ length: CONCURRENCY }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    let next = 0;
    const samples: number[] = [];
    const t0 = process.hrtime.bigint();
    await Promise.all(
      agents.map(async (agent) => {
        for (let i = next++; i < REQUESTS; i = next++) samples.push(await timed(() => fn(agent, i)));
      }),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    for (const a of agents) a.destroy();
    return { perSecond: REQUESTS / seconds, stats: stats(samples) };
  }

  say(`measuring: ${REQUESTS} requests, warm-up ${WARMUP}, concurrency ${CONCURRENCY}`);
  const baseline = await sequential(attestOnly);
  const one = new Agent({ keepAlive: true, maxSockets: 1 });
  const svidSeq = await sequential((i) => svid(one, i));
  const jwtSeq = await sequential((i) => jwt(one, i));
  one.destroy();
  const svidPar = await throughput(svid);
  const jwtPar = await throughput(jwt);
  await cluster.stop();
  ports.close();

  const result = {
    kubeApiserver: cp.version,
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    baselineAttestation: baseline,
    svidSequential: svidSeq,
    jwtSequential: jwtSeq,
    svidConcurrent: svidPar,
    jwtConcurrent: jwtPar,
  };
  if (flags.json) {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } else {
    const ms = (x: number): string => x.toFixed(2);
    const ratio = (s: Stats): string => `${(s.p50 / baseline.p50).toFixed(2)}×`;
    process.stdout.write(
      [
        `Identity issuance against kube-apiserver ${cp.version} on loopback (TokenReview + pod GET per request; ${REQUESTS} requests after ${WARMUP} warm-up).`,
        '',
        '| Measurement | p50 ms | p95 ms | p99 ms | p50 vs baseline |',
        '|---|---:|---:|---:|---:|',
        `| Baseline: TokenReview + pod GET alone (Node → API server) | ${ms(baseline.p50)} | ${ms(baseline.p95)} | ${ms(baseline.p99)} | 1.00× |`,
        `| X.509-SVID via POST /v1/svid, sequential | ${ms(svidSeq.p50)} | ${ms(svidSeq.p95)} | ${ms(svidSeq.p99)} | ${ratio(svidSeq)} |`,
        `| JWT-SVID via POST /v1/jwt, sequential | ${ms(jwtSeq.p50)} | ${ms(jwtSeq.p95)} | ${ms(jwtSeq.p99)} | ${ratio(jwtSeq)} |`,
        `| X.509-SVID, ${CONCURRENCY} concurrent clients | ${ms(svidPar.stats.p50)} | ${ms(svidPar.stats.p95)} | ${ms(svidPar.stats.p99)} | ${ratio(svidPar.stats)} |`,
        `| JWT-SVID, ${CONCURRENCY} concurrent clients | ${ms(jwtPar.stats.p50)} | ${ms(jwtPar.stats.p95)} | ${ms(jwtPar.stats.p99)} | ${ratio(jwtPar.stats)} |`,
        '',
        `Throughput with ${CONCURRENCY} concurrent clients: ${svidPar.perSecond.toFixed(0)} X.509-SVIDs/s, ${jwtPar.perSecond.toFixed(0)} JWT-SVIDs/s.`,
        '',
      ].join('\n'),
    );
  }
} finally {
  await cp.stop();
}
