// Envoy's ext_authz v3 protocol, loaded from the .proto files that @grpc/grpc-js-xds ships (never
// copied into this repository, so an upgrade of that package is an upgrade of the protocol).
// Two views of the same files:
//  - the @grpc/proto-loader package definition, which the gRPC server and @grpc/reflection use;
//  - a protobufjs Root with the same names and conversions, so tests and tools can encode and
//    decode real CheckRequest/CheckResponse bytes, strictly (an unknown field is an error, not
//    something silently dropped as protobufjs' fromObject would do).
// Loading parses ~130 message types (tens of milliseconds), so each view is built once.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { MandateError } from '../errors.ts';

export const AUTH_PROTO_FILE = 'envoy/service/auth/v3/external_auth.proto';
export const AUTH_SERVICE_NAME = 'envoy.service.auth.v3.Authorization';
export const CHECK_METHOD_PATH = `/${AUTH_SERVICE_NAME}/Check`;

/**
 * How decoded messages look to our code, and the options both views share.
 * - keepCase: field names exactly as in the .proto and in Envoy's documentation (`raw_body`,
 *   `header_map`, `ok_response`), one spelling everywhere, no camelCase translation layer.
 * - longs String: `size` is int64; strings never lose precision and need no Long library.
 * - enums String: decoded enums are readable names; encoding accepts names or numbers.
 * - defaults false: an absent field stays absent, so `headers` vs `header_map` and `body` vs
 *   `raw_body` can be told apart (with defaults every field would be present and empty).
 * - oneofs true: decoded messages name the member that is set (`http_response: 'ok_response'`).
 * - bytes left at the default: `raw_body` decodes to a Buffer, not a base64 string.
 */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
});

const conversion: protobuf.IConversionOptions = { longs: String, enums: String, defaults: false, oneofs: true };

const includeSubdirs = ['deps/envoy-api', 'deps/xds', 'deps/googleapis', 'deps/protoc-gen-validate'] as const;

let includeDirsMemo: readonly string[] | undefined;

/** Absolute include paths of the Envoy, xDS, googleapis and PGV protos inside @grpc/grpc-js-xds. */
export function envoyProtoIncludeDirs(): readonly string[] {
  if (includeDirsMemo) return includeDirsMemo;
  const pkgDir = dirname(fileURLToPath(import.meta.resolve('@grpc/grpc-js-xds/package.json')));
  const dirs = includeSubdirs.map((d) => join(pkgDir, d));
  const missing = dirs.find((d) => !existsSync(d));
  if (missing !== undefined) throw new MandateError('INTERNAL', `Envoy protos not found at ${missing}; is @grpc/grpc-js-xds installed?`);
  includeDirsMemo = Object.freeze(dirs);
  return includeDirsMemo;
}

let packageMemo: PackageDefinition | undefined;

/** The proto-loader package definition of the ext_authz service (for the server and reflection). */
export function authPackageDefinition(): PackageDefinition {
  packageMemo ??= protoLoader.loadSync(AUTH_PROTO_FILE, { ...LOADER_OPTIONS, includeDirs: [...envoyProtoIncludeDirs()] });
  return packageMemo;
}

/** envoy.service.auth.v3.Authorization, ready for `server.addService`. */
export function authorizationService(): ServiceDefinition {
  const service = authPackageDefinition()[AUTH_SERVICE_NAME];
  if (!service || !('Check' in service)) throw new MandateError('INTERNAL', `${AUTH_SERVICE_NAME} missing from ${AUTH_PROTO_FILE}`);
  return service;
}

let descriptorSetMemo: Buffer | undefined;

/**
 * The files of the package definition as a serialized google.protobuf.FileDescriptorSet
 * (`grpcurl -protoset`, `buf`, or any tool that wants the schema without the .proto files).
 * @grpc/reflection needs none of this: it reads the package definition directly.
 */
export function authFileDescriptorSet(): Buffer {
  if (descriptorSetMemo) return descriptorSetMemo;
  // Every entry of a package definition shares one list of files; collect by identity, then by content.
  const buffers = new Set<Buffer>();
  for (const entry of Object.values(authPackageDefinition())) {
    const files = 'fileDescriptorProtos' in entry ? (entry.fileDescriptorProtos as Buffer[] | undefined) : undefined;
    for (const file of files ?? []) buffers.add(file);
  }
  const unique = new Map<string, Buffer>();
  for (const file of buffers) unique.set(file.toString('base64'), file);
  // FileDescriptorSet is `repeated FileDescriptorProto file = 1`: tag 0x0a, length, bytes.
  descriptorSetMemo = Buffer.concat([...unique.values()].flatMap((file) => [Buffer.from([0x0a]), varint(file.length), file]));
  return descriptorSetMemo;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

export interface AuthProtoTypes {
  readonly root: protobuf.Root;
  readonly CheckRequest: protobuf.Type;
  readonly CheckResponse: protobuf.Type;
}

let typesMemo: AuthProtoTypes | undefined;

/** A protobufjs Root over the same files and options as the package definition. */
export function authProtoTypes(): AuthProtoTypes {
  if (typesMemo) return typesMemo;
  const dirs = envoyProtoIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of dirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync(AUTH_PROTO_FILE, { keepCase: true });
  root.resolveAll();
  typesMemo = Object.freeze({
    root,
    CheckRequest: root.lookupType('envoy.service.auth.v3.CheckRequest'),
    CheckResponse: root.lookupType('envoy.service.auth.v3.CheckResponse'),
  });
  return typesMemo;
}

/** Which representation `encodeStrict` is given. */
export type MessageForm =
  /** Canonical proto3 JSON (RFC 3339 timestamps, plain-JSON Struct, raw wrapper values); both proto and lowerCamel names. */
  | 'json'
  /** protobufjs object form, as the gRPC layer takes and gives it (proto names, Struct as `{fields}`). */
  | 'object';

/**
 * Checks `value` against `type` with no tolerance for unknown fields, wrong scalar types,
 * undefined enum values or two members of one oneof, and encodes it. Returns the wire bytes.
 */
export function encodeStrict(type: protobuf.Type, value: unknown, form: MessageForm): Uint8Array {
  const message = type.fromObject(convertMessage(type, value, form, type.name));
  const problem = type.verify(message);
  if (problem) throw malformed(type.name, problem);
  return type.encode(message).finish();
}

/** Decodes wire bytes into the same object form the gRPC server hands to the check handler. */
export function decodeToObject(type: protobuf.Type, bytes: Uint8Array): Record<string, unknown> {
  return type.toObject(type.decode(bytes), conversion);
}

function malformed(path: string, message: string): MandateError {
  return new MandateError('REQUEST_MALFORMED', `${path}: ${message}`, { path });
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

const camel = (name: string): string => name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

function convertMessage(type: protobuf.Type, value: unknown, form: MessageForm, path: string): Record<string, unknown> {
  if (form === 'json') {
    const wkt = wellKnownFromJson(type, value, path);
    if (wkt !== undefined) return wkt;
  }
  if (!isPlainObject(value)) throw malformed(path, `expected an object for ${type.fullName}`);
  const byName = new Map<string, protobuf.Field>();
  for (const field of type.fieldsArray) {
    byName.set(field.name, field);
    if (form === 'json') byName.set(camel(field.name), field);
  }
  const out: Record<string, unknown> = {};
  const oneofSeen = new Map<string, string>();
  for (const [key, raw] of Object.entries(value)) {
    const field = byName.get(key);
    if (!field) {
      const oneof = form === 'object' ? type.oneofsArray.find((o) => o.name === key) : undefined;
      if (oneof && typeof raw === 'string' && oneof.oneof.includes(raw)) continue;
      throw malformed(`${path}.${key}`, `unknown field of ${type.fullName}`);
    }
    if (field.name in out) throw malformed(`${path}.${key}`, 'field given twice (proto and JSON name)');
    if (raw === null && form === 'json' && field.resolvedType?.fullName !== '.google.protobuf.Value') continue;
    if (raw === undefined) continue;
    if (field.partOf) {
      const other = oneofSeen.get(field.partOf.name);
      if (other !== undefined) throw malformed(`${path}.${key}`, `oneof ${field.partOf.name} already has ${other}`);
      oneofSeen.set(field.partOf.name, field.name);
    }
    out[field.name] = convertField(field, raw, form, `${path}.${field.name}`);
  }
  for (const oneof of type.oneofsArray) {
    const declared = form === 'object' ? value[oneof.name] : undefined;
    if (declared !== undefined && declared !== oneofSeen.get(oneof.name)) {
      throw malformed(`${path}.${oneof.name}`, `names ${JSON.stringify(declared)} but ${oneofSeen.get(oneof.name) ?? 'no member'} is set`);
    }
  }
  return out;
}

function convertField(field: protobuf.Field, raw: unknown, form: MessageForm, path: string): unknown {
  if (field instanceof protobuf.MapField) {
    if (!isPlainObject(raw)) throw malformed(path, 'expected an object for a map');
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(raw)) {
      checkMapKey(field.keyType, k, `${path}[${k}]`);
      out[k] = convertSingle(field, v, form, `${path}[${k}]`);
    }
    return out;
  }
  if (field.repeated) {
    if (!Array.isArray(raw)) throw malformed(path, 'expected an array for a repeated field');
    return raw.map((v, i) => convertSingle(field, v, form, `${path}[${i}]`));
  }
  return convertSingle(field, raw, form, path);
}

function checkMapKey(keyType: string, key: string, path: string): void {
  if (keyType === 'string') return;
  if (keyType === 'bool' && (key === 'true' || key === 'false')) return;
  if (/^-?\d+$/.test(key) && keyType !== 'bool') return;
  throw malformed(path, `map key is not a valid ${keyType}`);
}

const int32Range: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  sint32: [-(2 ** 31), 2 ** 31 - 1],
  sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  fixed32: [0, 2 ** 32 - 1],
};
const int64Types = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

function convertSingle(field: protobuf.Field, raw: unknown, form: MessageForm, path: string): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return convertMessage(resolved, raw, form, path);
  if (resolved instanceof protobuf.Enum) {
    if (typeof raw === 'string' && raw in resolved.values) return raw;
    if (typeof raw === 'number' && Object.values(resolved.values).includes(raw)) return raw;
    throw malformed(path, `not a value of enum ${resolved.fullName}`);
  }
  const t = field.type;
  if (t === 'string') {
    if (typeof raw !== 'string') throw malformed(path, 'expected a string');
    return raw;
  }
  if (t === 'bool') {
    if (typeof raw !== 'boolean') throw malformed(path, 'expected a boolean');
    return raw;
  }
  if (t === 'bytes') {
    if (form === 'object' && raw instanceof Uint8Array) return raw;
    if (typeof raw === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(raw)) return Buffer.from(raw, raw.includes('-') || raw.includes('_') ? 'base64url' : 'base64');
    throw malformed(path, 'expected base64 bytes');
  }
  if (t === 'double' || t === 'float') {
    if (typeof raw === 'number') return raw;
    if (form === 'json' && typeof raw === 'string' && /^(NaN|-?Infinity|-?\d+(\.\d+)?([eE][-+]?\d+)?)$/.test(raw)) return Number(raw);
    throw malformed(path, `expected a ${t}`);
  }
  const range = int32Range[t];
  if (range) {
    const n = typeof raw === 'string' && form === 'json' && /^-?\d+$/.test(raw) ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < range[0] || n > range[1]) throw malformed(path, `expected a ${t}`);
    return n;
  }
  if (int64Types.has(t)) {
    if (typeof raw === 'number' && Number.isSafeInteger(raw)) return raw;
    if (typeof raw === 'string' && /^-?\d{1,20}$/.test(raw)) return raw;
    throw malformed(path, `expected a ${t} (integer or decimal string)`);
  }
  throw malformed(path, `unsupported scalar type ${t}`);
}

const wrapperTypes = new Set(
  ['Double', 'Float', 'Int64', 'UInt64', 'Int32', 'UInt32', 'Bool', 'String', 'Bytes'].map((n) => `.google.protobuf.${n}Value`),
);

/** proto3 JSON forms of the well-known types that appear in Envoy messages; undefined = not one. */
function wellKnownFromJson(type: protobuf.Type, value: unknown, path: string): Record<string, unknown> | undefined {
  const field = (camelName: string): string => {
    const f = type.fieldsArray.find((x) => camel(x.name) === camelName);
    if (!f) throw malformed(path, `${type.fullName} has no field ${camelName}`);
    return f.name;
  };
  switch (type.fullName) {
    case '.google.protobuf.Timestamp': {
      if (typeof value !== 'string') throw malformed(path, 'expected an RFC 3339 timestamp string');
      const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(value);
      const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
      if (!m || Number.isNaN(ms)) throw malformed(path, 'expected an RFC 3339 timestamp string');
      return { [field('seconds')]: String(Math.floor(ms / 1000)), [field('nanos')]: Number((m[2] ?? '').padEnd(9, '0')) };
    }
    case '.google.protobuf.Duration': {
      const m = typeof value === 'string' ? /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(value) : null;
      if (!m) throw malformed(path, 'expected a duration string such as "1.5s"');
      const sign = m[1] ? -1 : 1;
      return { [field('seconds')]: `${m[1] ?? ''}${m[2]}`, [field('nanos')]: sign * Number((m[3] ?? '').padEnd(9, '0')) };
    }
    case '.google.protobuf.Struct': {
      if (!isPlainObject(value)) throw malformed(path, 'expected a JSON object for Struct');
      const valueType = type.lookupType('google.protobuf.Value');
      return { [field('fields')]: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wellKnownFromJson(valueType, v, `${path}.${k}`)])) };
    }
    case '.google.protobuf.ListValue': {
      if (!Array.isArray(value)) throw malformed(path, 'expected a JSON array for ListValue');
      const valueType = type.lookupType('google.protobuf.Value');
      return { [field('values')]: value.map((v, i) => wellKnownFromJson(valueType, v, `${path}[${i}]`)) };
    }
    case '.google.protobuf.Value': {
      if (value === null) return { [field('nullValue')]: 'NULL_VALUE' };
      if (typeof value === 'number') return { [field('numberValue')]: value };
      if (typeof value === 'string') return { [field('stringValue')]: value };
      if (typeof value === 'boolean') return { [field('boolValue')]: value };
      if (Array.isArray(value)) return { [field('listValue')]: wellKnownFromJson(type.lookupType('google.protobuf.ListValue'), value, path) };
      if (isPlainObject(value)) return { [field('structValue')]: wellKnownFromJson(type.lookupType('google.protobuf.Struct'), value, path) };
      throw malformed(path, 'not a JSON value');
    }
    case '.google.protobuf.Any':
    case '.google.protobuf.FieldMask':
      throw malformed(path, `${type.fullName} in JSON form is not supported here`);
    default:
      if (wrapperTypes.has(type.fullName)) {
        const inner = type.fieldsArray[0];
        if (!inner) throw malformed(path, `${type.fullName} has no value field`);
        return { [inner.name]: convertSingle(inner, value, 'json', path) };
      }
      return undefined;
  }
}
