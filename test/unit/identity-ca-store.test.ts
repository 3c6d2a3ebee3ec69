import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { X509Certificate as NodeX509, createPrivateKey } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isMandateError } from '../../controller/src/errors.ts';
import { createLogger, silentLogger, type Logger } from '../../controller/src/log.ts';
import { createRootCA } from '../../controller/src/identity/ca.ts';
import { caPaths, loadOrCreateCA } from '../../controller/src/identity/ca-store.ts';
import { issueToFolder } from '../../controller/src/identity/issue.ts';
import { certsFromPem } from '../../controller/src/identity/pem.ts';

const run = promisify(execFile);
const TD = 'cluster.local';
const STORE_TS = new URL('../../controller/src/identity/ca-store.ts', import.meta.url).href;

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mandate-ca-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function capturingLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { log: createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }), lines };
}

void test('first start creates the CA with private modes; the next start loads the same CA', async (t) => {
  const dataDir = join(await tempDir(t), 'data');
  const { log, lines } = capturingLogger();
  const created = await loadOrCreateCA({ dataDir, trustDomain: TD, log });
  const p = caPaths(dataDir);
  assert.equal((await stat(p.key)).mode & 0o777, 0o600);
  assert.equal((await stat(p.dir)).mode & 0o777, 0o700);
  assert.equal(await readFile(p.cert, 'utf8'), created.certPem);
  assert.equal(await readFile(p.bundle, 'utf8'), created.certPem);
  assert.ok(new NodeX509(created.certPem).checkPrivateKey(createPrivateKey(await readFile(p.key, 'utf8'))));
  assert.ok(lines.some((l) => l.msg === 'created a new CA'));
  assert.ok(!JSON.stringify(lines).includes('PRIVATE KEY'), 'key material never reaches the log');

  const loaded = await loadOrCreateCA({ dataDir, trustDomain: TD, log });
  assert.equal(loaded.certPem, created.certPem);
  assert.equal(loaded.bundlePem, created.bundlePem);
  assert.equal(loaded.notAfter.getTime(), created.notAfter.getTime());
  assert.ok(lines.some((l) => l.msg === 'CA loaded'));
  assert.ok(!lines.some((l) => l.level === 'warn'), JSON.stringify(lines));
  assert.deepEqual((await readdir(dataDir)).sort(), ['ca'], 'no lock or temp files left behind');
});

void test('concurrent loadOrCreateCA calls in one process yield one CA', async (t) => {
  const dataDir = await tempDir(t);
  const results = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger })));
  const onDisk = await readFile(caPaths(dataDir).cert, 'utf8');
  for (const r of results) assert.equal(r.certPem, onDisk);
  assert.deepEqual((await readdir(dataDir)).sort(), ['ca']);
});

void test('two processes starting at once yield one CA', async (t) => {
  const dir = await tempDir(t);
  const dataDir = join(dir, 'data');
  const child = join(dir, 'child.mjs');
  await writeFile(
    child,
    `import { loadOrCreateCA } from ${JSON.stringify(STORE_TS)};
     import { silentLogger } from ${JSON.stringify(new URL('../../controller/src/log.ts', import.meta.url).href)};
     const ca = await loadOrCreateCA({ dataDir: process.argv[2], trustDomain: 'cluster.local', log: silentLogger });
     process.stdout.write(ca.certPem);`,
  );
  const runs = await Promise.all([1, 2, 3].map(() => run(process.execPath, [child, dataDir])));
  const onDisk = await readFile(caPaths(dataDir).cert, 'utf8');
  for (const r of runs) assert.equal(r.stdout, onDisk);
  assert.deepEqual((await readdir(dataDir)).sort(), ['ca']);
});

void test('a corrupt certificate is CA_UNAVAILABLE naming the file, and is never replaced', async (t) => {
  const dataDir = await tempDir(t);
  await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  const p = caPaths(dataDir);
  await writeFile(p.cert, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  await assert.rejects(
    loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && e.message.startsWith(`${p.cert}: `) && e.details.file === p.cert,
  );
  assert.equal(await readFile(p.cert, 'utf8'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
});

void test('a corrupt key or a bundle of garbage names that file', async (t) => {
  const dataDir = await tempDir(t);
  await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  const p = caPaths(dataDir);
  const key = await readFile(p.key, 'utf8');
  await writeFile(p.key, 'not a key');
  await assert.rejects(loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger }), (e) => isMandateError(e, 'CA_UNAVAILABLE') && e.message.startsWith(`${p.key}: `));
  await writeFile(p.key, key);
  await writeFile(p.bundle, 'garbage');
  await assert.rejects(loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger }), (e) => isMandateError(e, 'CA_UNAVAILABLE') && e.message.startsWith(`${p.bundle}: `));
});

void test('a key that does not match the certificate is CA_UNAVAILABLE', async (t) => {
  const dataDir = await tempDir(t);
  await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  const p = caPaths(dataDir);
  const other = await createRootCA({ trustDomain: TD, now: new Date() });
  await writeFile(p.key, other.keyPem);
  await assert.rejects(
    loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && e.message === `${p.key}: private key does not belong to ${p.cert}`,
  );
  assert.equal(await readFile(p.key, 'utf8'), other.keyPem, 'left for a human to fix');
});

void test('a CA of another trust domain is CA_UNAVAILABLE', async (t) => {
  const dataDir = await tempDir(t);
  await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  await assert.rejects(
    loadOrCreateCA({ dataDir, trustDomain: 'prod.example.com', log: silentLogger }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /trust domain "cluster.local" but Mandate is configured for "prod.example.com"/.test(e.message),
  );
});

void test('a half-present CA (one file missing) is CA_UNAVAILABLE, not a new CA', async (t) => {
  const dataDir = await tempDir(t);
  const ca = await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  const p = caPaths(dataDir);
  await unlink(p.key);
  await assert.rejects(loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger }), (e) => isMandateError(e, 'CA_UNAVAILABLE') && e.message.startsWith(`${p.key}: is missing`));
  assert.equal(await readFile(p.cert, 'utf8'), ca.certPem);
  await unlink(p.cert);
  await assert.rejects(loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger }), (e) => isMandateError(e, 'CA_UNAVAILABLE') && /no ca\.crt or ca\.key/.test(e.message));
  await unlink(p.bundle);
  // An empty CA folder is just "no CA yet".
  const fresh = await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  assert.notEqual(fresh.certPem, ca.certPem);
});

void test('loose key permissions and a CA near expiry are warned about', async (t) => {
  const dataDir = await tempDir(t);
  const now = new Date();
  await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger, now, caTtlDays: 20 });
  const p = caPaths(dataDir);
  await chmod(p.key, 0o644);
  const { log, lines } = capturingLogger();
  await loadOrCreateCA({ dataDir, trustDomain: TD, log, now });
  const warnings = lines.filter((l) => l.level === 'warn').map((l) => String(l.msg));
  assert.ok(warnings.some((w) => /readable by other users/.test(w)), warnings.join('\n'));
  assert.ok(warnings.some((w) => /expires in (19|20) days/.test(w)), warnings.join('\n'));
  await assert.rejects(
    loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger, now: new Date(now.getTime() + 21 * 86_400_000) }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /expired/.test(e.message),
  );
});

void test('the trust bundle is rewritten when missing and amended when it lacks the active CA', async (t) => {
  const dataDir = await tempDir(t);
  const ca = await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  const p = caPaths(dataDir);
  await unlink(p.bundle);
  await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  assert.equal(await readFile(p.bundle, 'utf8'), ca.certPem);

  const previous = await createRootCA({ trustDomain: TD, now: new Date() });
  await writeFile(p.bundle, previous.certPem);
  const { log, lines } = capturingLogger();
  const loaded = await loadOrCreateCA({ dataDir, trustDomain: TD, log });
  assert.ok(lines.some((l) => l.level === 'warn' && /did not contain the active CA/.test(String(l.msg))));
  const roots = certsFromPem(await readFile(p.bundle, 'utf8'));
  assert.equal(roots.length, 2);
  assert.equal(loaded.bundlePem, await readFile(p.bundle, 'utf8'));
  assert.equal(loaded.bundlePem, ca.certPem + previous.certPem);
});

void test('a folder with other files in the CA place is not taken over', async (t) => {
  const dataDir = await tempDir(t);
  await mkdir(join(dataDir, 'ca'));
  await writeFile(join(dataDir, 'ca', 'notes.txt'), 'x');
  await assert.rejects(loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger }), (e) => isMandateError(e, 'CA_UNAVAILABLE') && /notes\.txt/.test(e.message));
});

void test('a lock left by a dead process is broken; a live one makes a waiter time out', async (t) => {
  const dataDir = await tempDir(t);
  const p = caPaths(dataDir);
  const exited = spawnSync(process.execPath, ['-e', '0']);
  assert.equal(exited.status, 0);
  await writeFile(p.lock, JSON.stringify({ pid: exited.pid, host: hostname(), time: new Date().toISOString(), nonce: 'x' }));
  const ca = await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger, lockTimeoutMs: 5000 });
  assert.equal(await readFile(p.cert, 'utf8'), ca.certPem);
  await assert.rejects(stat(p.lock), { code: 'ENOENT' });

  const other = await tempDir(t);
  const q = caPaths(other);
  await writeFile(q.lock, JSON.stringify({ pid: process.pid, host: hostname(), time: new Date().toISOString(), nonce: 'y' }));
  await assert.rejects(
    loadOrCreateCA({ dataDir: other, trustDomain: TD, log: silentLogger, lockTimeoutMs: 150 }),
    (e) => isMandateError(e, 'CA_UNAVAILABLE') && /timed out .* waiting for lock/.test(e.message),
  );
  await assert.rejects(stat(q.dir), { code: 'ENOENT' }, 'nothing created without the lock');
  // An old enough lock is stale whoever owns it.
  const ca2 = await loadOrCreateCA({ dataDir: other, trustDomain: TD, log: silentLogger, staleLockMs: 0 });
  assert.equal(await readFile(q.cert, 'utf8'), ca2.certPem);
});

void test('an invalid trust domain is a configuration error', async (t) => {
  const dataDir = await tempDir(t);
  await assert.rejects(loadOrCreateCA({ dataDir, trustDomain: 'UPPER.case', log: silentLogger }), (e) => isMandateError(e, 'CONFIG_INVALID'));
});

void test('issueToFolder writes cert.pem, key.pem (0600) and bundle.pem that openssl accepts', async (t) => {
  const dataDir = await tempDir(t);
  const ca = await loadOrCreateCA({ dataDir, trustDomain: TD, log: silentLogger });
  const outDir = join(dataDir, 'out', 'bot');
  const spiffeId = 'spiffe://cluster.local/ns/payments/agent/refund-bot';
  const r = await issueToFolder({ ca, spiffeId, ttlSeconds: 900, outDir, now: new Date() });
  assert.equal(r.certPath, join(outDir, 'cert.pem'));
  assert.equal((await stat(r.keyPath)).mode & 0o777, 0o600);
  assert.equal(await readFile(r.bundlePath, 'utf8'), ca.bundlePem);
  const certPem = await readFile(r.certPath, 'utf8');
  const x = new NodeX509(certPem);
  assert.equal(x.subjectAltName, `URI:${spiffeId}`);
  assert.ok(x.checkPrivateKey(createPrivateKey(await readFile(r.keyPath, 'utf8'))));
  assert.equal(r.serial, x.serialNumber.toLowerCase().replace(/^(00)+/, ''));
  assert.equal(r.notAfter.getTime(), x.validToDate.getTime());
  const v = spawnSync('openssl', ['verify', '-CAfile', r.bundlePath, r.certPath], { encoding: 'utf8' });
  if (v.error) throw v.error;
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, /cert\.pem: OK/);
  const serial = spawnSync('openssl', ['x509', '-noout', '-serial', '-in', r.certPath], { encoding: 'utf8' });
  assert.equal(serial.stdout.trim().toLowerCase(), `serial=${x.serialNumber.toLowerCase()}`);

  await assert.rejects(
    issueToFolder({ ca, spiffeId: 'spiffe://other.org/ns/a/agent/b', ttlSeconds: 900, outDir: join(dataDir, 'nope'), now: new Date() }),
    (e) => isMandateError(e, 'CERT_REQUEST_INVALID'),
  );
  await assert.rejects(stat(join(dataDir, 'nope')), { code: 'ENOENT' }, 'nothing written for a refused request');
});
