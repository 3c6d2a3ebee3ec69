// Descriptors that reflection clients can resolve. @grpc/proto-loader builds its file
// descriptors through protobufjs, which writes type references relative to their scope
// ("type.v3.HttpStatus") and leaves every file's dependency list empty. grpc-js does not care,
// but grpcurl, grpcui and other reflection clients must link the files, and fail with
// "cannot resolve type". Here each reference is resolved by protobuf's scoping rule (innermost
// enclosing scope first) to its fully qualified name (".envoy.type.v3.HttpStatus"), and each
// file lists the files it uses.
import { createRequire } from 'node:module';
import type { PackageDefinition } from '@grpc/proto-loader';

// protobufjs' descriptor extension is CommonJS without typings of its message shapes.
const descriptor = createRequire(import.meta.url)('protobufjs/ext/descriptor') as {
  FileDescriptorProto: { decode(b: Uint8Array): FileProto; encode(m: FileProto): { finish(): Uint8Array } };
};

interface FieldProto { name: string; label?: number; typeName?: string; extendee?: string; defaultValue?: string; jsonName?: string }
interface Range { start: number; end: number }
interface MessageProto {
  name: string;
  field?: FieldProto[];
  extension?: FieldProto[];
  nestedType?: MessageProto[];
  enumType?: { name: string }[];
  options?: { mapEntry?: boolean };
  extensionRange?: Range[];
  reservedRange?: Range[];
}
interface MethodProto { name: string; inputType: string; outputType: string }
interface FileProto {
  name: string;
  package?: string;
  syntax?: string;
  dependency: string[];
  messageType?: MessageProto[];
  enumType?: { name: string }[];
  extension?: FieldProto[];
  service?: { name: string; method?: MethodProto[] }[];
}

/** A copy of `definition` whose file descriptors are fully qualified and linked. */
export function linkedPackageDefinition(definition: PackageDefinition): PackageDefinition {
  const originals = new Set<Buffer>();
  for (const entry of Object.values(definition)) {
    for (const b of ('fileDescriptorProtos' in entry ? (entry.fileDescriptorProtos as Buffer[]) : [])) originals.add(b);
  }
  const files = [...originals].map((b) => ({ original: b, proto: descriptor.FileDescriptorProto.decode(b) }));

  for (const { proto } of files) renameMapEntries(proto.messageType);

  // Which file declares each fully qualified type name.
  const declaredIn = new Map<string, string>();
  const declare = (file: string, scope: string, messages: MessageProto[] = [], enums: { name: string }[] = []) => {
    for (const e of enums) declaredIn.set(`${scope}.${e.name}`, file);
    for (const m of messages) {
      declaredIn.set(`${scope}.${m.name}`, file);
      declare(file, `${scope}.${m.name}`, m.nestedType, m.enumType);
    }
  };
  for (const { proto } of files) declare(proto.name, proto.package ? `.${proto.package}` : '', proto.messageType, proto.enumType);

  const rewritten = new Map<Buffer, Buffer>();
  for (const { original, proto } of files) {
    const uses = new Set<string>();
    // protobufjs writes one file per package and calls them all proto3, so descriptor.proto's
    // types (proto2: defaults, extension ranges) land in a "proto3" file that no strict
    // reader accepts. Such a file is declared proto2; the wire format is the same.
    let proto2 = false;
    // `name` as written inside `scope` (".pkg.Msg"): try ".pkg.Msg.name", ".pkg.name", ".name".
    const qualify = (scope: string, name: string): string => {
      let full: string | undefined = name.startsWith('.') ? name : undefined;
      for (let s = scope; full === undefined; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
        if (declaredIn.has(`${s}.${name}`)) full = `${s}.${name}`;
        else if (s === '') break;
      }
      if (full === undefined) return name;
      const file = declaredIn.get(full);
      if (file && file !== proto.name) uses.add(file);
      return full;
    };
    const fields = (scope: string, list: FieldProto[] = []) => {
      for (const f of list) {
        if (f.defaultValue !== undefined || f.label === 2) proto2 = true;
        // With keepCase, protobufjs sets json_name to the proto name ("ok_response"); protoc
        // writes lowerCamelCase ("okResponse"), which clients derive themselves when it is absent.
        delete f.jsonName;
        if (f.typeName) f.typeName = qualify(scope, f.typeName);
        if (f.extendee) f.extendee = qualify(scope, f.extendee);
      }
    };
    const walk = (scope: string, messages: MessageProto[] = []) => {
      for (const m of messages) {
        const full = `${scope}.${m.name}`;
        // protobufjs copies every extension into the message it extends as a "sister" field
        // named after the extension (".udpa.annotations.file_status" inside FileOptions). The
        // extension is declared in its own file already; the copy would make google/protobuf
        // depend on udpa and udpa on google/protobuf, a cycle reflection clients cannot load.
        if (m.field) m.field = m.field.filter((f) => !f.name.startsWith('.'));
        // protobufjs keeps ranges inclusive and writes them as they are; a descriptor's `end` is
        // exclusive, so "extensions 536000000" came out as the empty range [536000000, 536000000).
        for (const r of [...(m.extensionRange ?? []), ...(m.reservedRange ?? [])]) r.end += 1;
        if ((m.extensionRange ?? []).length > 0) proto2 = true;
        fields(full, m.field);
        fields(full, m.extension);
        walk(full, m.nestedType);
      }
    };
    const pkg = proto.package ? `.${proto.package}` : '';
    fields(pkg, proto.extension);
    walk(pkg, proto.messageType);
    for (const s of proto.service ?? []) {
      for (const m of s.method ?? []) {
        m.inputType = qualify(pkg, m.inputType);
        m.outputType = qualify(pkg, m.outputType);
      }
    }
    proto.dependency = [...uses].sort();
    if (proto2) proto.syntax = 'proto2';
    rewritten.set(original, Buffer.from(descriptor.FileDescriptorProto.encode(proto).finish()));
  }

  const out: PackageDefinition = {};
  for (const [name, entry] of Object.entries(definition)) {
    out[name] =
      'fileDescriptorProtos' in entry
        ? ({ ...entry, fileDescriptorProtos: (entry.fileDescriptorProtos as Buffer[]).map((b) => rewritten.get(b) ?? b) } as typeof entry)
        : entry;
  }
  return out;
}

// A map field's entry message must be named after the field in CamelCase plus "Entry"
// ("context_extensions" → "ContextExtensionsEntry"); protobufjs names it differently.
function renameMapEntries(messages: MessageProto[] = []): void {
  for (const m of messages) {
    for (const entry of m.nestedType ?? []) {
      if (!entry.options?.mapEntry) continue;
      for (const f of m.field ?? []) {
        if (f.typeName !== entry.name && !f.typeName?.endsWith(`.${entry.name}`)) continue;
        const name = f.name.replace(/(^|_)([a-z0-9])/gi, (_all, _sep: string, c: string) => c.toUpperCase()) + 'Entry';
        f.typeName = name;
        entry.name = name;
      }
    }
    renameMapEntries(m.nestedType);
  }
}
