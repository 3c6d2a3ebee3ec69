import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { ReflectionV1Implementation } from '@grpc/reflection/build/src/implementations/reflection-v1.js';
import type { MethodDefinition } from '@grpc/proto-loader';
import {
  AUTH_PROTO_FILE,
  AUTH_SERVICE_NAME,
  CHECK_METHOD_PATH,
  authFileDescriptorSet,
  authPackageDefinition,
  authProtoTypes,
  authorizationService,
  decodeToObject,
  encodeStrict,
  envoyProtoIncludeDirs,
} from '../../controller/src/authz/protos.ts';
import { isMandateError } from '../../controller/src/errors.ts';

test('include dirs point into @grpc/grpc-js-xds and hold the ext_authz proto', () => {
  const dirs = envoyProtoIncludeDirs();
  assert.equal(dirs.length, 4);
  for (const d of dirs) assert.match(d, /@grpc[/\\]grpc-js-xds[/\\]deps[/\\]/);
  assert.ok(existsSync(join(dirs[0] as string, AUTH_PROTO_FILE)));
});

test('loading is memoised: the same objects come back', () => {
  assert.equal(authPackageDefinition(), authPackageDefinition());
  assert.equal(authProtoTypes(), authProtoTypes());
  assert.equal(envoyProtoIncludeDirs(), envoyProtoIncludeDirs());
});

test('the Authorization service has the unary Check method at the path Envoy calls', () => {
  const service = authorizationService();
  const check = service.Check as MethodDefinition<object, object> | undefined;
  assert.ok(check);
  assert.equal(check.path, CHECK_METHOD_PATH);
  assert.equal(CHECK_METHOD_PATH, '/envoy.service.auth.v3.Authorization/Check');
  assert.equal(check.requestStream, false);
  assert.equal(check.responseStream, false);
});

test('the package definition serves reflection for the service', () => {
  const def = authPackageDefinition();
  const added: string[] = [];
  new ReflectionService(def).addToServer({
    addService: (svc) => {
      for (const m of Object.values(svc)) added.push(m.path);
    },
  });
  assert.ok(added.includes('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'));
  assert.ok(added.includes('/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'));

  const impl = new ReflectionV1Implementation(def);
  assert.deepEqual(impl.listServices('*').service?.map((s) => s.name), [AUTH_SERVICE_NAME]);
  const files = impl.fileContainingSymbol('envoy.service.auth.v3.CheckRequest').fileDescriptorProto ?? [];
  assert.ok(files.length > 1, 'the file and its imports are served');
});

test('the FileDescriptorSet bytes load back with proto-loader and contain the service', () => {
  const set = authFileDescriptorSet();
  const reloaded = protoLoader.loadFileDescriptorSetFromBuffer(set, { keepCase: true });
  assert.ok(reloaded[AUTH_SERVICE_NAME]);
  assert.ok(reloaded['envoy.service.auth.v3.CheckResponse']);
  assert.ok(reloaded['envoy.config.core.v3.HeaderValueOption']);
});

test('strict encoding rejects unknown fields at any depth, in both forms', () => {
  const { CheckRequest, CheckResponse } = authProtoTypes();
  const bad = [
    { attributes: { request: { http: { method: 'GET' } } }, extra: 1 },
    { attributes: { request: { http: { method: 'GET', bogus: 'x' } } } },
    { attributes: { source: { address: { socket_address: { address: '1.2.3.4', portValue: 1, nope: true } } } } },
  ];
  for (const form of ['json', 'object'] as const) {
    for (const msg of bad) {
      assert.throws(() => encodeStrict(CheckRequest, msg, form), (e) => isMandateError(e, 'REQUEST_MALFORMED'));
    }
  }
  assert.throws(() => encodeStrict(CheckResponse, { status: { code: 0 }, ok_response: { headers: [], bogus: [] } }, 'object'), /bogus/);
  assert.throws(() => encodeStrict(CheckResponse, { status: { code: 0 }, denied_response: {}, ok_response: {} }, 'object'), /oneof/);
  assert.throws(() => encodeStrict(CheckResponse, { denied_response: { status: { code: 999 } } }, 'object'), /enum/);
  assert.throws(
    () => encodeStrict(CheckResponse, { ok_response: { headers: [{ header: { key: 'a', value: 'b' }, append_action: 'SOMETIMES' }] } }, 'object'),
    /enum/,
  );
  assert.throws(() => encodeStrict(CheckRequest, { attributes: { request: { http: { method: 7 } } } }, 'object'), /expected a string/);
  assert.throws(() => encodeStrict(CheckRequest, { attributes: { request: { time: 'yesterday' } } }, 'json'), /RFC 3339/);
});

test('proto3 JSON well-known types convert; bytes round-trip through the server deserializer', () => {
  const { CheckRequest } = authProtoTypes();
  const json = {
    attributes: {
      request: {
        time: '2025-06-30T09:14:03.5Z',
        http: { method: 'POST', rawBody: Buffer.from('{"a":1}').toString('base64'), size: '7', headers: { ':path': '/x' } },
      },
      metadata_context: { filter_metadata: { 'envoy.filters.http.x': { n: 1, s: 't', b: true, z: null, l: [1, 'two'], o: { k: 'v' } } } },
    },
  };
  const bytes = encodeStrict(CheckRequest, json, 'json');
  const check = authorizationService().Check as MethodDefinition<object, object>;
  const viaServer = check.requestDeserialize(Buffer.from(bytes)) as Record<string, unknown>;
  const viaRoot = decodeToObject(CheckRequest, bytes);
  assert.deepEqual(viaServer, viaRoot);
  const attrs = viaRoot.attributes as { request: { time: { seconds: string; nanos: number }; http: { raw_body: Buffer; size: string } } };
  assert.deepEqual(attrs.request.time, { seconds: String(Date.parse('2025-06-30T09:14:03Z') / 1000), nanos: 500_000_000 });
  assert.ok(Buffer.isBuffer(attrs.request.http.raw_body));
  assert.equal(attrs.request.http.raw_body.toString(), '{"a":1}');
  assert.equal(attrs.request.http.size, '7');
  const fm = (viaRoot.attributes as { metadata_context: { filter_metadata: Record<string, { fields: Record<string, unknown> }> } }).metadata_context
    .filter_metadata['envoy.filters.http.x'];
  // Value's oneof `kind` is named alongside the member, as for every oneof (oneofs: true).
  assert.deepEqual(fm?.fields.s, { stringValue: 't', kind: 'stringValue' });
  assert.deepEqual(fm?.fields.z, { nullValue: 'NULL_VALUE', kind: 'nullValue' });
  assert.deepEqual(fm?.fields.l, {
    kind: 'listValue',
    listValue: { values: [{ numberValue: 1, kind: 'numberValue' }, { stringValue: 'two', kind: 'stringValue' }] },
  });
});

test('decoded responses name the oneof member, and object form re-encodes to the same bytes', () => {
  const { CheckResponse } = authProtoTypes();
  const msg = {
    status: { code: 7 },
    denied_response: { status: { code: 403 }, headers: [{ header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }], body: '{}' },
  };
  const bytes = encodeStrict(CheckResponse, msg, 'object');
  const decoded = decodeToObject(CheckResponse, bytes);
  assert.equal(decoded.http_response, 'denied_response');
  assert.deepEqual((decoded.denied_response as { status: unknown }).status, { code: 'Forbidden' });
  assert.deepEqual(Buffer.from(encodeStrict(CheckResponse, decoded, 'object')), Buffer.from(bytes));
});
