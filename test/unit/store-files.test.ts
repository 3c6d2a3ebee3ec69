// The standalone FileStore: all-or-nothing publication, immutable snapshots swapped atomically,
// serialised reloads, the watcher, and logs that never carry a secret.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { FileStore, type LoadResult } from '../../controller/src/store/files.ts';
import type { ManifestProblem, Snapshot } from '../../controller/src/store/snapshot.ts';
import { createLogger, silentLogger } from '../../controller/src/log.ts';
import { isMandateError } from '../../controller/src/errors.ts';

const fixtures = resolve(import.meta.dirname, '../fixtures/manifests');
const temps: string[] = [];
after(async () => {
  await Promise.all(temps.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempCopy(of = 'valid'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mandate-store-'));
  temps.push(dir);
  await cp(join(fixtures, of), dir, { recursive: true });
  return dir;
}

interface Compiled {
  readonly revision: number;
  readonly policies: readonly string[];
}
const compileKeys = (s: Snapshot): { compiled: Compiled; problems: ManifestProblem[] } => ({
  compiled: { revision: s.revision, policies: [...s.policies.keys()] },
  problems: [],
});

function captureLogs(): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: 'debug', write: (l) => lines.push(l) }) };
}

/** Resolves with the first load event that satisfies `predicate`; rejects after a deadline. */
function nextEvent(store: FileStore<unknown>, predicate: (e: LoadResult) => boolean, ms = 10_000): Promise<LoadResult> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching load event within ${ms} ms`));
    }, ms);
    const off = store.subscribe((e) => {
      if (!predicate(e)) return;
      clearTimeout(timer);
      off();
      resolvePromise(e);
    });
  });
}

const ruleNames = (s: Snapshot, key: string): string[] => s.policies.get(key)?.spec.rules.map((r) => r.name) ?? [];

describe('loading a folder', () => {
  test('reads *.yaml, *.yml and *.json recursively, skipping dot-files, dot-dirs and other files', async () => {
    const dir = join(fixtures, 'valid');
    const store = new FileStore({ dir, watch: false, log: silentLogger, compile: compileKeys });
    const result = await store.load();
    assert.deepEqual(result, { ok: true, revision: 1, problems: [] });
    const current = store.current();
    assert.ok(current);
    const { snapshot, compiled } = current;
    assert.equal(snapshot.revision, 1);
    assert.equal(snapshot.source, `files:${dir}`);
    assert.ok(!Number.isNaN(Date.parse(snapshot.loadedAt)));
    assert.deepEqual([...snapshot.identities.keys()].sort(), ['default/nested-agent', 'fixtures/fixture-agent']);
    assert.deepEqual([...snapshot.tools.keys()], ['fixtures/fixture-tool']);
    assert.deepEqual(compiled, { revision: 1, policies: ['fixtures/fixture-policy'] });
    assert.deepEqual(Object.fromEntries(snapshot.secrets.get('fixtures/fixture-secret')?.values ?? []), { token: 'fixture-token-value', other: 'from-string-data' });
    assert.equal(snapshot.identities.get('default/nested-agent')?.spec.trustLevel, 'high');
    assert.equal(snapshot.identities.get('fixtures/fixture-agent')?.spec.tokenTTL, '5m', 'defaults applied');
  });

  test('published objects are deeply immutable', async () => {
    const store = new FileStore({ dir: join(fixtures, 'valid'), watch: false, log: silentLogger, compile: compileKeys });
    await store.load();
    const current = store.current();
    assert.ok(current);
    const { snapshot } = current;
    const agent = snapshot.identities.get('fixtures/fixture-agent');
    assert.ok(agent);
    assert.throws(() => (snapshot.identities as Map<string, unknown>).set('x/y', agent), TypeError);
    assert.throws(() => (snapshot.policies as Map<string, unknown>).delete('fixtures/fixture-policy'), TypeError);
    assert.throws(() => (snapshot.tools as Map<string, unknown>).clear(), TypeError);
    assert.throws(() => {
      agent.spec.suspended = true;
    }, TypeError);
    assert.throws(() => {
      (agent.metadata.labels as Record<string, string>).team = 'other';
    }, TypeError);
    assert.throws(() => (snapshot.secrets.get('fixtures/fixture-secret')?.values as Map<string, string>).set('token', 'x'), TypeError);
    assert.throws(() => {
      (snapshot as { revision: number }).revision = 9;
    }, TypeError);
    assert.throws(() => {
      (current as { compiled: unknown }).compiled = undefined;
    }, TypeError);
    assert.equal(snapshot.identities.size, 2);
    assert.equal(agent.spec.suspended, false);
  });

  test('a broken folder publishes nothing and every problem names file, line, object and field', async () => {
    const { lines, log } = captureLogs();
    const dir = join(fixtures, 'broken', 'schema');
    const store = new FileStore({ dir, watch: false, log, compile: compileKeys });
    const result = await store.load();
    assert.equal(result.ok, false);
    assert.equal(result.revision, 0);
    assert.equal(store.current(), undefined);
    const file = join(dir, 'policy.yaml');
    assert.deepEqual(
      result.problems.map((p) => [p.file, p.line, p.object, p.field]).sort((a, b) => Number(a[1]) - Number(b[1])),
      [
        [file, 14, 'AgentPolicy fixtures/broken-policy', '.spec.rules[1].effect'],
        [file, 19, 'AgentPolicy fixtures/broken-policy', '.spec.rules[2].rateLimit'],
        [file, 20, 'AgentPolicy fixtures/broken-policy', '.spec.rules[2].whenn'],
      ],
    );
    const problemLines = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'manifest problem');
    assert.equal(problemLines.length, 3, 'one log line per problem');
    for (const l of problemLines) {
      assert.equal(l.file, file);
      assert.equal(l.object, 'AgentPolicy fixtures/broken-policy');
      assert.match(String(l.field), /^\.spec\.rules\[\d\]/);
      assert.equal(typeof l.line, 'number');
    }
  });

  for (const [folder, pattern] of [
    ['yaml', /invalid YAML/],
    ['kind-typo', /did you mean AgentPolicy/],
    ['duplicate', /duplicate AgentIdentity fixtures\/twin.*a\.yaml:1/],
    ['base64', /not valid base64/],
    ['references', /does not exist/],
  ] as const) {
    test(`broken/${folder} is refused`, async () => {
      const store = new FileStore({ dir: join(fixtures, 'broken', folder), watch: false, log: silentLogger, compile: compileKeys });
      const result = await store.load();
      assert.equal(result.ok, false);
      assert.ok(result.problems.length > 0 && result.problems.every((p) => p.file?.startsWith(join(fixtures, 'broken', folder))));
      assert.ok(result.problems.some((p) => pattern.test(p.message)), JSON.stringify(result.problems));
      assert.equal(store.current(), undefined);
    });
  }

  test('secret values never reach problems or logs', async () => {
    const { lines, log } = captureLogs();
    const dir = await mkdtemp(join(tmpdir(), 'mandate-store-'));
    temps.push(dir);
    await writeFile(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndata:\n  token: SUPER-SECRET-VALUE-not-base64!\n');
    await writeFile(join(dir, 'b.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: b}\nstringData:\n  token: "SUPER-SECRET-\\q"\n');
    await writeFile(join(dir, 'c.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: c}\nstringData:\n  token: 12345678\n  other: SUPER-SECRET-in-an-unknown-field\nextra: SUPER-SECRET-too\n');
    const store = new FileStore({ dir, watch: false, log, compile: compileKeys });
    const result = await store.load();
    assert.equal(result.ok, false);
    assert.ok(result.problems.length >= 3);
    const everything = JSON.stringify(result.problems) + lines.join('\n');
    assert.doesNotMatch(everything, /SUPER-SECRET|12345678/);
    assert.match(everything, /\.data\.token/);
  });

  test('symlinks are followed, as in a ConfigMap volume (files link into a hidden ..data dir), loops are not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mandate-store-'));
    temps.push(dir);
    await cp(join(fixtures, 'valid'), join(dir, '..2030_01_01'), { recursive: true });
    await symlink('..2030_01_01', join(dir, '..data'));
    for (const name of ['agent.yaml', 'tool.json', 'secret.yml', 'nested']) await symlink(join('..data', name), join(dir, name));
    await symlink('.', join(dir, 'loop'));
    const store = new FileStore({ dir, watch: false, log: silentLogger, compile: compileKeys });
    const result = await store.load();
    assert.deepEqual(result.problems, []);
    assert.equal(store.current()?.snapshot.identities.size, 2, 'each file read once despite the loop');
  });

  test('a folder that does not exist is a problem; watching it is an error', async () => {
    const dir = join(tmpdir(), `mandate-missing-${process.pid}-${Date.now()}`);
    const store = new FileStore({ dir, watch: true, log: silentLogger, compile: compileKeys });
    const result = await store.load();
    assert.equal(result.ok, false);
    assert.match(result.problems[0]?.message ?? '', /ENOENT/);
    await assert.rejects(store.start(), (err: unknown) => isMandateError(err, 'MANIFEST_UNREADABLE'));
    await store.stop();
  });
});

describe('reloading', () => {
  test('a broken change keeps the last good snapshot; a later good change publishes', async () => {
    const dir = await tempCopy();
    const events: LoadResult[] = [];
    const store = new FileStore({ dir, watch: false, log: silentLogger, compile: compileKeys });
    store.subscribe((e) => events.push(e));
    assert.equal((await store.load()).revision, 1);
    const good = store.current();
    assert.ok(good);

    const policyFile = join(dir, 'agent.yaml');
    const original = await readFile(policyFile, 'utf8');
    await writeFile(policyFile, original.replace('effect: Deny', 'effect: Deyn').replace('name: read', 'name: read-all'));
    const broken = await store.load();
    assert.equal(broken.ok, false);
    assert.equal(broken.revision, 1, 'still serving revision 1');
    assert.equal(broken.problems.length, 1);
    assert.equal(broken.problems[0]?.field, '.spec.rules[1].effect');
    assert.equal(store.current(), good, 'the very same published pair');
    assert.deepEqual(ruleNames(good.snapshot, 'fixtures/fixture-policy'), ['read', 'no-delete'], 'old content');

    await writeFile(policyFile, original.replace('name: read', 'name: read-all'));
    const fixed = await store.load();
    assert.deepEqual(fixed, { ok: true, revision: 2, problems: [] });
    assert.deepEqual(ruleNames(store.current()?.snapshot as Snapshot, 'fixtures/fixture-policy'), ['read-all', 'no-delete']);
    assert.deepEqual(
      events.map((e) => [e.ok, e.revision]),
      [
        [true, 1],
        [false, 1],
        [true, 2],
      ],
      'subscribers see every attempt, good or bad',
    );
  });

  test('a snapshot taken before a reload is unchanged after it', async () => {
    const dir = await tempCopy();
    const store = new FileStore({ dir, watch: false, log: silentLogger, compile: compileKeys });
    await store.load();
    const taken = store.current();
    assert.ok(taken);
    const agentBefore = taken.snapshot.identities.get('fixtures/fixture-agent');

    const file = join(dir, 'agent.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replace('serviceAccount: fixture-agent', 'serviceAccount: fixture-agent\n  suspended: true'));
    await rm(join(dir, 'nested'), { recursive: true });
    assert.equal((await store.load()).revision, 2);

    assert.equal(taken.snapshot.revision, 1);
    assert.equal(taken.compiled.revision, 1);
    assert.equal(taken.snapshot.identities.size, 2);
    assert.equal(taken.snapshot.identities.get('fixtures/fixture-agent'), agentBefore);
    assert.equal(agentBefore?.spec.suspended, false);
    const now = store.current();
    assert.notEqual(now, taken);
    assert.equal(now?.snapshot.identities.get('fixtures/fixture-agent')?.spec.suspended, true);
    assert.equal(now?.snapshot.identities.size, 1);
  });

  test('compile problems block publication and are pointed at the manifest', async () => {
    const dir = await tempCopy();
    let fail = false;
    const store = new FileStore({
      dir,
      watch: false,
      log: silentLogger,
      compile: (s: Snapshot) => ({
        compiled: s.revision,
        problems: fail ? [{ object: 'AgentPolicy fixtures/fixture-policy', field: '.spec.rules[1].actions', message: 'no tool has the action fixture.delete' }] : [],
      }),
    });
    assert.equal((await store.load()).ok, true);
    fail = true;
    const result = await store.load();
    assert.equal(result.ok, false);
    assert.equal(result.revision, 1);
    assert.equal(store.current()?.snapshot.revision, 1);
    const text = await readFile(join(dir, 'agent.yaml'), 'utf8');
    assert.deepEqual(result.problems, [
      {
        object: 'AgentPolicy fixtures/fixture-policy',
        field: '.spec.rules[1].actions',
        message: 'no tool has the action fixture.delete',
        file: join(dir, 'agent.yaml'),
        line: text.split('\n').indexOf('      actions: [fixture.delete]') + 1,
      },
    ]);
  });

  test('a compile function that throws blocks publication too', async () => {
    const store = new FileStore({
      dir: join(fixtures, 'valid'),
      watch: false,
      log: silentLogger,
      compile: (): { compiled: number; problems: ManifestProblem[] } => {
        throw new Error('compiler bug');
      },
    });
    const result = await store.load();
    assert.equal(result.ok, false);
    assert.match(result.problems[0]?.message ?? '', /policy compilation failed: compiler bug/);
    assert.equal(store.current(), undefined);
  });

  test('the compiler also runs on a folder with manifest problems, so one attempt reports everything', async () => {
    const seen: number[] = [];
    const store = new FileStore({
      dir: join(fixtures, 'broken', 'schema'),
      watch: false,
      log: silentLogger,
      compile: (s: Snapshot) => {
        seen.push(s.policies.size);
        return { compiled: 0, problems: [{ object: 'AgentIdentity x/y', field: '', message: 'compile problem' }] };
      },
    });
    const result = await store.load();
    assert.deepEqual(seen, [0]);
    assert.equal(result.problems.length, 4);
    assert.ok(result.problems.some((p) => p.message === 'compile problem'));
  });

  test('loads never overlap: calls during a load share exactly one follow-up load', async () => {
    const compiledRevisions: number[] = [];
    const store = new FileStore({
      dir: join(fixtures, 'valid'),
      watch: false,
      log: silentLogger,
      compile: (s: Snapshot) => {
        compiledRevisions.push(s.revision);
        return { compiled: s.revision, problems: [] };
      },
    });
    const first = store.load();
    const second = store.load();
    const third = store.load();
    assert.equal(second, third, 'the queued calls share one load');
    const results = await Promise.all([first, second, third]);
    assert.deepEqual(
      results.map((r) => r.revision),
      [1, 2, 2],
    );
    assert.deepEqual(compiledRevisions, [1, 2]);
    assert.equal((await store.load()).revision, 3, 'after the queue drains, a load runs at once');
  });

  test('unsubscribe stops the events', async () => {
    const store = new FileStore({ dir: join(fixtures, 'valid'), watch: false, log: silentLogger, compile: compileKeys });
    let count = 0;
    const off = store.subscribe(() => count++);
    await store.load();
    off();
    await store.load();
    assert.equal(count, 1);
  });
});

describe('watching', () => {
  // Written the way editors and kubectl cp do: a dot-file (ignored), then an atomic rename, so the
  // watcher never sees a half-written file.
  async function atomicWrite(path: string, text: string): Promise<void> {
    const temp = join(dirname(path), `.${basename(path)}.tmp`);
    await writeFile(temp, text);
    await rename(temp, path);
  }

  test('a file change is picked up, a broken one is refused, a fix publishes again', async () => {
    const dir = await tempCopy();
    const { lines, log } = captureLogs();
    const store = new FileStore({ dir, watch: true, debounceMs: 20, log, compile: compileKeys });
    const served = (): Snapshot => store.current()?.snapshot as Snapshot;
    try {
      const initial = await store.start();
      assert.deepEqual(initial, { ok: true, revision: 1, problems: [] });

      const file = join(dir, 'agent.yaml');
      const original = await readFile(file, 'utf8');
      const published = nextEvent(store, (e) => e.ok && ruleNames(served(), 'fixtures/fixture-policy')[0] === 'read-watched');
      await atomicWrite(file, original.replace('name: read', 'name: read-watched'));
      const first = await published;
      assert.ok(first.revision >= 2);

      const refused = nextEvent(store, (e) => !e.ok);
      await atomicWrite(join(dir, 'nested', 'extra.yaml'), 'apiVersion: mandate.dev/v1alpha1\nkind: AgentPolicyy\nmetadata: {name: x}\n');
      const bad = await refused;
      assert.equal(bad.revision, first.revision, 'still serving the last good revision');
      assert.equal(served().revision, first.revision);
      assert.ok(bad.problems.some((p) => p.file === join(dir, 'nested', 'extra.yaml') && p.field === '.kind'));
      assert.ok(lines.some((l) => l.includes(`manifests rejected; still serving revision ${first.revision}`)));

      const again = nextEvent(store, (e) => e.ok);
      await rm(join(dir, 'nested', 'extra.yaml'));
      const fixed = await again;
      assert.ok(fixed.revision > first.revision);
      assert.equal(served().revision, fixed.revision);
    } finally {
      await store.stop();
    }
  });
});
