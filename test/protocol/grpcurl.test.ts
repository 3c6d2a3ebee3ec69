// grpcurl, built from its Go module by the harness, discovers the Check method through gRPC
// server reflection (no local protos) and calls it over mTLS: what an operator does by hand.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { ensureGoTool } from '../harness/gotools.ts';
import { makeWorkspace, type Workspace } from '../harness/workspace.ts';
import { startStandalone, type StandaloneHandle } from '../../controller/src/standalone.ts';
import { silentLogger } from '../../controller/src/log.ts';

const run = promisify(execFile);
let ws: Workspace;
let app: StandaloneHandle;
let grpcurl: string;
let tls: string[];

before(async () => {
  grpcurl = await ensureGoTool('grpcurl');
  ws = await makeWorkspace();
  app = await startStandalone(ws.config(), silentLogger, { stdout: () => undefined });
  await ws.svid('agents', 'github-agent');
  const dir = join(ws.root, 'svid', 'agents-github-agent');
  tls = ['-cacert', join(dir, 'bundle.pem'), '-cert', join(dir, 'cert.pem'), '-key', join(dir, 'key.pem')];
});

after(async () => {
  await app?.close();
  await ws?.remove();
});

test('grpcurl lists the Authorization service through reflection', async () => {
  const { stdout } = await run(grpcurl, [...tls, `127.0.0.1:${app.authzPort}`, 'list']);
  assert.match(stdout, /^envoy\.service\.auth\.v3\.Authorization$/m);
});

test('grpcurl calls Check: an allowed issue listing gets the credential, a deletion is denied', async () => {
  const call = async (method: string, path: string) => {
    const data = JSON.stringify({ attributes: { request: { http: { method, host: 'api.github.com', path } } } });
    const { stdout } = await run(grpcurl, [...tls, '-d', data, `127.0.0.1:${app.authzPort}`, 'envoy.service.auth.v3.Authorization/Check']);
    // grpcurl prints the original proto field names.
    return JSON.parse(stdout) as { ok_response?: { headers?: { header: { key: string; value: string } }[] }; denied_response?: { status?: { code?: string }; body?: string } };
  };
  const ok = await call('GET', '/repos/acme/app/issues');
  assert.ok(ok.ok_response?.headers?.some((h) => h.header.key === 'authorization' && h.header.value.startsWith('Bearer ')));
  const denied = await call('DELETE', '/repos/acme/app/git/refs/heads/main');
  assert.equal(denied.denied_response?.status?.code, 'Forbidden');
  assert.match(denied.denied_response?.body ?? '', /never-delete-branches/);
});

test('grpcurl without a client certificate is refused', async () => {
  await assert.rejects(run(grpcurl, ['-connect-timeout', '3', '-cacert', tls[1]!, `127.0.0.1:${app.authzPort}`, 'list']));
});
