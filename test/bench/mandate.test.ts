// The config the benchmark serves Mandate with must be one Mandate's own config loader accepts,
// with the settings the report claims (loopback only, the default or chosen fsync, no audit copy on stdout).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildConfig, readConfigFile } from '../../controller/src/config.ts';
import { freePort, mandateConfigYaml } from './mandate.ts';

const dir = await mkdtemp(join(tmpdir(), 'bench-mandate-test-'));
after(() => rm(dir, { recursive: true, force: true }));

describe('benchmark config for mandate serve', () => {
  it('is accepted by controller/src/config.ts with the intended settings', async () => {
    const file = join(dir, 'mandate.yaml');
    await writeFile(file, mandateConfigYaml({ dataDir: join(dir, 'data'), manifests: join(dir, 'manifests'), authzPort: 19001, httpPort: 19090, trustDomain: 'cluster.local' }));
    const config = buildConfig(readConfigFile(file));
    assert.equal(config.authz.listen, '127.0.0.1:19001');
    assert.equal(config.http.listen, '127.0.0.1:19090');
    assert.equal(config.standalone.manifests, join(dir, 'manifests'));
    assert.equal(config.standalone.watch, false);
    assert.equal(config.dataDir, join(dir, 'data'));
    assert.equal(config.audit.dir, join(dir, 'data', 'audit'));
    assert.equal(config.audit.fsync, 'interval', 'the product default unless the run asks for another');
    assert.equal(config.audit.stdout, false);
    assert.equal(config.trustDomain, 'cluster.local');
    const batch = buildConfig(readConfigFile(await writeFile(file, mandateConfigYaml({ dataDir: join(dir, 'data'), manifests: join(dir, 'manifests'), authzPort: 1, httpPort: 2, trustDomain: 'cluster.local', fsync: 'batch' })).then(() => file)));
    assert.equal(batch.audit.fsync, 'batch');
  });

  it('finds a loopback port that can be bound', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
    const server = createServer().listen(port, '127.0.0.1');
    await once(server, 'listening');
    server.close();
    await once(server, 'close');
  });
});
