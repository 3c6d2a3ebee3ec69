// The descriptors served by reflection must be what a strict protobuf reader accepts: every
// type reference fully qualified and declared, dependencies listed and acyclic, map entries
// named by the protobuf rule, exclusive range ends. (grpcurl proves it end to end in
// test/protocol/grpcurl.test.ts; this pins the invariants without a Go binary.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { authPackageDefinition } from '../../controller/src/authz/protos.ts';
import { linkedPackageDefinition } from '../../controller/src/authz/reflection.ts';

const desc = createRequire(import.meta.url)('protobufjs/ext/descriptor') as { FileDescriptorProto: { decode(b: Uint8Array): File } };
interface Field { name: string; typeName?: string; extendee?: string }
interface Msg { name: string; field?: Field[]; extension?: Field[]; nestedType?: Msg[]; enumType?: { name: string }[]; options?: { mapEntry?: boolean }; extensionRange?: { start: number; end: number }[] }
interface File { name: string; package?: string; dependency: string[]; messageType?: Msg[]; enumType?: { name: string }[]; extension?: Field[]; service?: { method?: { inputType: string; outputType: string }[] }[] }

const linked = linkedPackageDefinition(authPackageDefinition());
const entry = Object.values(linked).find((e) => 'fileDescriptorProtos' in e) as { fileDescriptorProtos: Buffer[] };
const files = entry.fileDescriptorProtos.map((b) => desc.FileDescriptorProto.decode(b));

const declared = new Map<string, string>();
const declare = (file: string, scope: string, msgs: Msg[] = [], enums: { name: string }[] = []) => {
  for (const e of enums) declared.set(`${scope}.${e.name}`, file);
  for (const m of msgs) {
    declared.set(`${scope}.${m.name}`, file);
    declare(file, `${scope}.${m.name}`, m.nestedType, m.enumType);
  }
};
for (const f of files) declare(f.name, f.package ? `.${f.package}` : '', f.messageType, f.enumType);

function* references(f: File): Generator<string> {
  const walk = function* (msgs: Msg[] = []): Generator<string> {
    for (const m of msgs) {
      for (const x of [...(m.field ?? []), ...(m.extension ?? [])]) {
        if (x.typeName) yield x.typeName;
        if (x.extendee) yield x.extendee;
      }
      yield* walk(m.nestedType);
    }
  };
  yield* walk(f.messageType);
  for (const x of f.extension ?? []) {
    if (x.typeName) yield x.typeName;
    if (x.extendee) yield x.extendee;
  }
  for (const s of f.service ?? []) for (const m of s.method ?? []) yield* [m.inputType, m.outputType];
}

test('every type reference is fully qualified, declared, and its file is a listed dependency', () => {
  for (const f of files) {
    for (const ref of references(f)) {
      assert.ok(ref.startsWith('.'), `${f.name}: relative reference ${ref}`);
      const home = declared.get(ref);
      assert.ok(home, `${f.name}: ${ref} is declared nowhere`);
      if (home !== f.name) assert.ok(f.dependency.includes(home), `${f.name} uses ${ref} from ${home} without depending on it`);
    }
  }
});

test('the dependency graph has no cycle', () => {
  const deps = new Map(files.map((f) => [f.name, f.dependency]));
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): void => {
    if (state.get(name) === 'done') return;
    assert.notEqual(state.get(name), 'visiting', `cycle: ${[...path, name].join(' -> ')}`);
    state.set(name, 'visiting');
    for (const d of deps.get(name) ?? []) visit(d, [...path, name]);
    state.set(name, 'done');
  };
  for (const f of files) visit(f.name, []);
});

test('map entries are named <Field>Entry and extension ranges are non-empty', () => {
  let maps = 0;
  const walk = (msgs: Msg[] = []) => {
    for (const m of msgs) {
      for (const n of m.nestedType ?? []) if (n.options?.mapEntry) {
        maps++;
        assert.match(n.name, /^[A-Z][A-Za-z0-9]*Entry$/);
      }
      for (const r of m.extensionRange ?? []) assert.ok(r.end > r.start, `${m.name}: empty range ${r.start}..${r.end}`);
      walk(m.nestedType);
    }
  };
  for (const f of files) walk(f.messageType);
  assert.ok(maps > 0, 'the ext_authz protos have map fields (headers, context_extensions)');
});
