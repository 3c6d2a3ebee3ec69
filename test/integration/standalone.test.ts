// The first "done when" of the spine, end to end with real parts: the README's start command
// (`npm start`) on the example manifests, a certificate from `mandate cert issue`, a gRPC client
// speaking Envoy's ext_authz protocol over mTLS, and `mandate audit verify` on what was written.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authorizationClient, httpCheckRequest, type CheckClient } from '../harness/envoy-client.ts';
import { mandate, startServer, until, type Server } from '../harness/mandate.ts';

const TOKEN = 'EXAMPLE-ONLY-not-a-real-github-token'; // the example Secret in policies/tools/github.yaml

interface HeaderOption { header: { key: string; value: string } }
interface Response {
  status?: { code?: number };
  ok_response?: { headers?: HeaderOption[]; headers_to_remove?: string[] };
  denied_response?: { status?: { code?: string | number }; body?: string; headers?: HeaderOption[] };
}

describe('standalone mandate from a fresh clone', () => {
  let work: string;
  let data: string;
  let server: Server;
  let certs: { ca: string; cert: string; key: string };
  let client: CheckClient;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'mandate-it-'));
    data = join(work, 'data');
    server = await startServer(['npm', 'start', '--silent', '--', '--data', data, '--authz-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0']);
    const issued = await mandate(['cert', 'issue', '--identity', 'agents/github-agent', '--out', join(work, 'gh'), '--data', data]);
    assert.equal(issued.code, 0, issued.stderr);
    assert.match(issued.stdout, /spiffe:\/\/cluster\.local\/ns\/agents\/agent\/github-agent/);
    certs = {
      ca: await readFile(join(work, 'gh', 'bundle.pem'), 'utf8'),
      cert: await readFile(join(work, 'gh', 'cert.pem'), 'utf8'),
      key: await readFile(join(work, 'gh', 'key.pem'), 'utf8'),
    };
    client = authorizationClient(server.authzPort, certs);
  });

  after(async () => {
    client?.close();
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('is ready and serves metrics', async () => {
    const ready = await fetch(`http://127.0.0.1:${server.httpPort}/readyz`);
    assert.equal(ready.status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
    assert.match(metrics, /^mandate_decisions_total\{effect="Allow",mode="Enforce"\} \d+/m);
  });

  test('an allowed GitHub call is OK, with the credential injected and spoofed headers removed', async () => {
    const res = (await client.check(
      httpCheckRequest({ method: 'GET', host: 'api.github.com', path: '/repos/acme/app/issues', headers: { 'x-mandate-identity': 'spiffe://cluster.local/ns/agents/agent/root' } }),
    )) as Response;
    assert.equal(res.status?.code ?? 0, 0);
    const headers = Object.fromEntries((res.ok_response?.headers ?? []).map((h) => [h.header.key, h.header.value]));
    assert.equal(headers.authorization, `Bearer ${TOKEN}`);
    assert.match(headers['x-mandate-decision-id'] ?? '', /^[0-9a-f-]{36}$/);
    assert.deepEqual(res.ok_response?.headers_to_remove, ['x-mandate-identity']);
  });

  test('a branch deletion is denied with 403 naming the rule', async () => {
    const res = (await client.check(httpCheckRequest({ method: 'DELETE', host: 'api.github.com', path: '/repos/acme/app/git/refs/heads/main' }))) as Response;
    assert.equal(res.status?.code, 7);
    const code = res.denied_response?.status?.code;
    assert.ok(code === 403 || code === 'Forbidden', `status ${String(code)}`);
    const body = JSON.parse(res.denied_response?.body ?? '{}') as { rule?: { rule?: string }; decision?: string };
    assert.equal(body.decision, 'Deny');
    assert.equal(body.rule?.rule, 'never-delete-branches');
    assert.ok(!(res.denied_response?.body ?? '').includes(TOKEN));
  });

  test('a client without a certificate is refused', async () => {
    const anonymous = authorizationClient(server.authzPort, { ca: certs.ca });
    try {
      await assert.rejects(anonymous.check(httpCheckRequest({ method: 'GET', host: 'api.github.com', path: '/repos/a/b/issues' }), 5_000), (err: { code?: number }) => {
        assert.ok(err.code === 14 || err.code === 16, `gRPC status ${String(err.code)}`); // UNAVAILABLE (handshake) or UNAUTHENTICATED
        return true;
      });
    } finally {
      anonymous.close();
    }
  });

  test('a client with a certificate from another CA is refused', async () => {
    const otherData = join(work, 'other-ca');
    const other = await mandate(['cert', 'issue', '--identity', 'agents/github-agent', '--out', join(work, 'other'), '--data', otherData]);
    assert.equal(other.code, 0, other.stderr);
    const foreign = authorizationClient(server.authzPort, {
      ca: certs.ca,
      cert: await readFile(join(work, 'other', 'cert.pem')),
      key: await readFile(join(work, 'other', 'key.pem')),
    });
    try {
      await assert.rejects(foreign.check(httpCheckRequest({ method: 'GET', host: 'api.github.com', path: '/repos/a/b/issues' }), 5_000), (err: { code?: number }) => {
        assert.ok(err.code === 14 || err.code === 16, `gRPC status ${String(err.code)}`);
        return true;
      });
    } finally {
      foreign.close();
    }
  });

  test('every decision is on stdout as JSON and none carries the credential', async () => {
    const decisions = () => server.stdoutLines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { kind?: string }).filter((d) => d.kind === 'decision');
    // The allowed and the denied call above; stdout is a pipe, so wait for the lines to arrive.
    await until(() => decisions().length >= 2, 10_000, 'two decision records on stdout');
    assert.ok(!server.stdoutLines.join('\n').includes(TOKEN));
    assert.ok(!server.logLines.join('\n').includes(TOKEN));
  });

  test('audit verify passes after shutdown and fails once a byte of a record changes', async () => {
    client.close();
    await server.stop();
    // npm itself dies of the signal; what matters is that Mandate shut down in order.
    assert.ok(server.logLines.some((l) => l.includes('"msg":"stopped"')), server.logLines.slice(-5).join('\n'));
    const audit = join(data, 'audit');
    const ok = await mandate(['audit', 'verify', audit]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^OK: \d+ records/);

    const segment = (await readdir(audit)).filter((f) => f.endsWith('.jsonl')).sort()[0]!;
    const path = join(audit, segment);
    const text = await readFile(path, 'utf8');
    const at = text.indexOf('"DELETE"') + 2; // inside the branch deletion's method
    assert.ok(at > 2, 'the deletion was recorded');
    await writeFile(path, text.slice(0, at) + 'd' + text.slice(at + 1)); // DELETE → DdLETE
    const bad = await mandate(['audit', 'verify', audit]);
    assert.equal(bad.code, 4, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /TAMPERED \(edited\)/);
  });
});
