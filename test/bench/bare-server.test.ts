// The benchmark baseline end to end with the real tools: the bare ext_authz server over mTLS,
// loaded by ghz with the scaled request mix, called by grpcurl and by a grpc-js client; and a
// caller without a client certificate gets nothing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { authPackageDefinition } from '../../controller/src/authz/protos.ts';
import { AUTH_PROTO_FILE, checkMethod, envoyProtoIncludeDirs, startBareServer, type BareServer } from '../harness/bare-server.ts';
import { ensureGoTool } from '../harness/gotools.ts';
import { ghzArgs, parseGhzReport, runGhz, type GhzTls } from './ghz.ts';
import { createTestPki, readTestPki, type TestPkiFiles } from './pki.ts';
import { probeMix } from './probe.ts';
import { scale } from './scale.ts';
import { writeLoadData } from './scale-files.ts';

const dir = await mkdtemp(join(tmpdir(), 'bench-bare-test-'));
let pki: TestPkiFiles;
let server: BareServer;
let tls: GhzTls;

before(async () => {
  pki = await createTestPki(join(dir, 'pki'));
  const pem = await readTestPki(pki);
  server = await startBareServer({ caPem: pem.caPem, certPem: pem.serverCertPem, keyPem: pem.serverKeyPem });
  tls = { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey, serverName: 'localhost' };
});
after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('bare server under ghz', { timeout: 20 * 60_000 }, () => {
  it('answers the whole scaled mix with OK over mTLS', async () => {
    const ghz = await ensureGoTool('ghz');
    const set = scale({ tools: [], secrets: [] });
    const dataFile = join(dir, 'load.json');
    await writeLoadData(dataFile, set);
    const before = server.calls();
    const result = await runGhz(ghz, { target: `127.0.0.1:${server.port}`, tls, dataFile, requests: 400, maxSeconds: 60, concurrency: 8, connections: 2, rps: 0, cpus: 1 });
    assert.equal(result.count, 400);
    assert.equal(result.errors, 0, JSON.stringify(result.statusCodes));
    assert.deepEqual(result.statusCodes, { OK: 400 });
    assert.equal(result.endReason, 'normal');
    assert.ok(result.rps > 0 && result.p50Ms > 0 && result.p99Ms >= result.p50Ms);
    assert.equal(server.calls() - before, 400);
  });

  it('is interrupted at the time bound and still reports', async () => {
    const ghz = await ensureGoTool('ghz');
    const dataFile = join(dir, 'one.json');
    await writeFile(dataFile, JSON.stringify({ attributes: { request: { http: { method: 'GET', path: '/', host: 'a.example' } } } }));
    // 1,000,000 calls at 50/s would take hours: the 2 s bound must end it.
    const started = Date.now();
    const result = await runGhz(ghz, { target: `127.0.0.1:${server.port}`, tls, dataFile, requests: 1_000_000, maxSeconds: 2, concurrency: 2, connections: 1, rps: 50, cpus: 1 });
    assert.ok(Date.now() - started < 20_000);
    assert.equal(result.endReason, 'cancel');
    assert.ok(result.count > 0 && result.count < 1000, String(result.count));
  });
});

describe('bare server with other clients', { timeout: 20 * 60_000 }, () => {
  it('answers grpcurl with one x-mandate-decision-id header', async () => {
    const grpcurl = await ensureGoTool('grpcurl');
    const args = [
      '-cacert', pki.ca, '-cert', pki.clientCert, '-key', pki.clientKey, '-servername', 'localhost',
      ...envoyProtoIncludeDirs().flatMap((d) => ['-import-path', d]),
      '-proto', AUTH_PROTO_FILE,
      '-d', JSON.stringify({ attributes: { request: { http: { method: 'GET', host: 'api.example', path: '/v1/x' } } } }),
      `127.0.0.1:${server.port}`, checkMethod,
    ];
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(grpcurl, args, { timeout: 30_000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out))),
    );
    const response = JSON.parse(stdout) as { status?: { code?: number }; okResponse?: { headers?: { header: { key: string; value: string } }[] } };
    assert.equal(response.status?.code ?? 0, 0);
    const headers = response.okResponse?.headers ?? [];
    assert.equal(headers.length, 1);
    assert.equal(headers[0]!.header.key, 'x-mandate-decision-id');
    assert.match(headers[0]!.header.value, /^[0-9a-f-]{36}$/);
  });

  it('allows every message of the mix for a grpc-js client, each with a decision id', async () => {
    const pem = await readTestPki(pki);
    const set = scale({ tools: [], secrets: [] });
    const probe = await probeMix(`127.0.0.1:${server.port}`, { caPem: pem.caPem, certPem: pem.clientCertPem, keyPem: pem.clientKeyPem, serverName: 'localhost' }, set.mix);
    assert.equal(probe.allowed, set.mix.length);
    assert.equal(probe.withDecisionId, set.mix.length);
    assert.equal(probe.errors, 0);
    // The bare server allows what Mandate would deny: exactly the expected denials differ.
    assert.equal(probe.mismatches.length, set.summary.expectDeny);
  });

  it('refuses a caller without a client certificate', async () => {
    const pem = await readTestPki(pki);
    const Client = grpc.makeGenericClientConstructor({}, 'Authorization');
    const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(pem.caPem)), { 'grpc.ssl_target_name_override': 'localhost' });
    const def = authPackageDefinition()['envoy.service.auth.v3.Authorization'] as unknown as Record<string, grpc.MethodDefinition<unknown, unknown>>;
    const check = def.Check!;
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(check.path, check.requestSerialize, check.responseDeserialize, {}, { deadline: Date.now() + 5000 }, (e) => resolve(e)),
    );
    client.close();
    assert.ok(err, 'the call must fail');
    assert.equal(err.code, grpc.status.UNAVAILABLE);
  });
});

describe('ghz glue', () => {
  it('builds the arguments for mTLS, the Envoy protos and the bounds', () => {
    const args = ghzArgs({ target: '127.0.0.1:1', tls: { caFile: 'ca', certFile: 'c', keyFile: 'k', serverName: 'localhost' }, dataFile: 'd.json', requests: 10, maxSeconds: 5, concurrency: 4, connections: 2, rps: 2000, cpus: 1 });
    const flag = (name: string): string | undefined => args[args.indexOf(name) + 1];
    assert.equal(flag('--proto'), AUTH_PROTO_FILE);
    assert.equal(flag('--call'), checkMethod);
    assert.equal(flag('--cacert'), 'ca');
    assert.equal(flag('--cname'), 'localhost');
    assert.equal(flag('-n'), '10');
    assert.equal(flag('--rps'), '2000');
    assert.equal(flag('-O'), 'json');
    assert.equal(flag('-i')?.split(',').length, 4);
    assert.equal(args.at(-1), '127.0.0.1:1');
    assert.equal(args.includes('-x'), false, 'ghz -x would ignore -n');
  });

  it('parses ghz JSON (nanoseconds) into milliseconds and counts non-OK calls', async () => {
    const sample = {
      count: 1000, total: 500_000_000, average: 1_500_000, rps: 2000, endReason: 'normal',
      statusCodeDistribution: { OK: 990, Unavailable: 10 },
      latencyDistribution: [{ percentage: 50, latency: 1_200_000 }, { percentage: 90, latency: 2_000_000 }, { percentage: 99, latency: 4_500_000 }],
    };
    const r = parseGhzReport(JSON.stringify(sample));
    assert.deepEqual([r.p50Ms, r.p90Ms, r.p99Ms, r.averageMs, r.errors, r.totalSeconds], [1.2, 2, 4.5, 1.5, 10, 0.5]);
    assert.throws(() => parseGhzReport('Summary: not json'), /did not print a JSON report/);
    // Interrupted: the calls in flight (at most the concurrency) are not failures of the server.
    const cut = parseGhzReport(JSON.stringify({ ...sample, endReason: 'cancel', statusCodeDistribution: { OK: 930, Unavailable: 70 } }), 64);
    assert.deepEqual([cut.errors, cut.cutInFlight], [6, 64]);
    assert.ok((await readFile(pki.ca, 'utf8')).includes('BEGIN CERTIFICATE'));
  });
});
