import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMalformed, parseAuthority, toHttpAttributes, type HttpRequestObject, type MalformedRequest } from '../../controller/src/authz/request.ts';
import type { HttpRequestAttributes } from '../../controller/src/authz/types.ts';

const limits = { maxBodyBytes: 1024 };
const req = (http: HttpRequestObject, principal?: string) => ({
  attributes: { ...(principal ? { source: { principal } } : {}), request: { http } },
});
const base: HttpRequestObject = { id: 'r-1', method: 'GET', host: 'api.example.com', path: '/v1/items', scheme: 'https', headers: {} };

function ok(http: HttpRequestObject, principal?: string): HttpRequestAttributes {
  const r = toHttpAttributes(req(http, principal), limits);
  if (isMalformed(r)) assert.fail(`unexpected malformed: ${r.message}`);
  return r;
}
function bad(http: HttpRequestObject | undefined, reason: MalformedRequest['reason'] = 'malformed'): MalformedRequest {
  const r = toHttpAttributes(http ? req(http) : { attributes: {} }, limits);
  assert.ok(isMalformed(r), 'expected a malformed request');
  assert.equal(r.reason, reason);
  assert.equal(r.httpStatus, reason === 'too-large' ? 413 : 400);
  return r;
}

test('a plain request is normalised', () => {
  const r = ok({ ...base, host: 'API.Example.COM:8443', path: '/v1/items?state=open&q=a+b%21', headers: { 'X-Trace': 't', ':method': 'GET' } }, 'pod-1');
  assert.equal(r.id, 'r-1');
  assert.equal(r.method, 'GET');
  assert.equal(r.host, 'api.example.com');
  assert.equal(r.port, 8443);
  assert.equal(r.path, '/v1/items');
  assert.deepEqual({ ...r.query }, { state: 'open', q: 'a b!' });
  assert.equal(r.repeatedQueryKeys, undefined);
  assert.deepEqual({ ...r.headers }, { 'x-trace': 't' }, 'names lower-cased, pseudo-headers dropped');
  assert.equal(r.scheme, 'https');
  assert.equal(r.body, undefined);
  assert.equal(r.bodyTruncated, false);
  assert.equal(r.sourceInstance, 'pod-1');
});

test('host and path fall back to the pseudo-headers when the fields are empty', () => {
  const r = ok({ method: 'POST', headers: { ':authority': 'svc.internal', ':path': '/a?b=1', ':scheme': 'http', 'x-request-id': 'abc' } });
  assert.equal(r.host, 'svc.internal');
  assert.equal(r.path, '/a');
  assert.equal(r.scheme, 'http');
  assert.equal(r.id, 'abc');
  assert.equal(r.port, undefined);
});

test('header_map (encode_raw_headers) is read like the headers map, repeats merged', () => {
  const r = ok({
    ...base,
    headers: undefined,
    header_map: {
      headers: [
        { key: 'Accept', raw_value: Buffer.from('a/b') },
        { key: 'accept', raw_value: Buffer.from('c/d') },
        { key: 'Cookie', value: 'x=1' },
        { key: 'cookie', value: 'y=2' },
        { key: ':authority', raw_value: Buffer.from('ignored.example') },
      ],
    },
  });
  assert.deepEqual({ ...r.headers }, { accept: 'a/b, c/d', cookie: 'x=1; y=2' });
  assert.equal(r.host, 'api.example.com', 'the host field wins over the pseudo-header');
});

test('repeated query keys keep the first value and are reported', () => {
  const r = ok({ ...base, path: '/x?amount=5&amount=5000&a=1&a=2&b' });
  assert.deepEqual({ ...r.query }, { amount: '5', a: '1', b: '' });
  assert.deepEqual(r.repeatedQueryKeys, ['amount', 'a']);
});

test('a __proto__ query key stays an ordinary key', () => {
  const r = ok({ ...base, path: '/x?__proto__=polluted&constructor=c' });
  assert.equal(Object.getPrototypeOf(r.query), Object.prototype);
  assert.equal(Object.hasOwn(r.query, '__proto__'), true);
  assert.equal(r.query.constructor, 'c');
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('bodies: raw_body wins over body, both become a Buffer; partial-body header sets bodyTruncated', () => {
  assert.equal(ok({ ...base, body: 'text' }).body?.toString(), 'text');
  assert.equal(ok({ ...base, body: 'text', raw_body: Buffer.from('bytes') }).body?.toString(), 'bytes');
  assert.equal(ok({ ...base, headers: { 'x-envoy-auth-partial-body': 'true' }, body: '{' }).bodyTruncated, true);
  assert.equal(ok({ ...base, headers: { 'x-envoy-auth-partial-body': 'false' }, body: '{}' }).bodyTruncated, false);
  assert.equal(ok({ ...base, body: '' }).body, undefined);
});

test('a body over the limit is too-large (413)', () => {
  const r = bad({ ...base, raw_body: Buffer.alloc(1025) }, 'too-large');
  assert.match(r.message, /1024 bytes/);
  assert.equal(isMalformed(ok({ ...base, raw_body: Buffer.alloc(1024) })), false);
});

test('malformed requests are refused with a message and what could be read', () => {
  assert.match(bad(undefined).message, /attributes\.request\.http/);
  assert.match(bad({ ...base, method: '' }).message, /method/);
  assert.match(bad({ ...base, method: 'GE T' }).message, /method/);
  assert.match(bad({ ...base, host: '' }).message, /host/);
  for (const host of ['exa mple.com', 'a..b', '-a.com', 'user@host', 'a:b:c', '[::1', '[zz]:80', 'x'.repeat(64) + '.com']) {
    assert.match(bad({ ...base, host }).message, /host/, host);
  }
  for (const host of ['a.com:0', 'a.com:65536', 'a.com:http']) assert.match(bad({ ...base, host }).message, /port/, host);
  for (const path of ['', 'v1/items', '*', 'http://evil/x']) assert.match(bad({ ...base, path }).message, /start with "\/"/, path);
  assert.match(bad({ ...base, path: '/a\u0000b' }).message, /control character/);
  assert.match(bad({ ...base, path: '/a b' }).message, /control character/);
  assert.match(bad({ ...base, path: '/a#frag' }).message, /"#"/);
  assert.match(bad({ ...base, path: '/' + 'a'.repeat(9000) }).message, /longer than/);
  assert.match(bad({ ...base, path: '/a?x=%zz' }).message, /percent-encoding/);
  assert.match(bad({ ...base, path: '/a?x=%00' }).message, /percent-encoding/);
  assert.match(bad({ ...base, path: '/a?' + Array.from({ length: 300 }, (_, i) => `k${i}=1`).join('&') }).message, /more than 256/);
  assert.match(bad({ ...base, scheme: 'ftp' }).message, /scheme/);
  const r = bad({ ...base, path: '/items?token=secret', scheme: 'gopher' });
  assert.deepEqual(r.partial, { id: 'r-1', method: 'GET', host: 'api.example.com', path: '/items' }, 'no query string in the audit partial');
});

test('host parsing: IPv4, IPv6, trailing dot, empty port', () => {
  assert.deepEqual(parseAuthority('10.0.0.1:80'), { host: '10.0.0.1', port: 80 });
  assert.deepEqual(parseAuthority('[2001:DB8::1]:443'), { host: '2001:db8::1', port: 443 });
  assert.deepEqual(parseAuthority('[::1]'), { host: '::1' });
  assert.deepEqual(parseAuthority('Example.com.'), { host: 'example.com' });
  assert.deepEqual(parseAuthority('example.com:'), { host: 'example.com' });
});

test('identity-looking inputs are carried as plain headers, never as identity', () => {
  const r = ok({ ...base, headers: { 'x-mandate-identity': 'spiffe://cluster.local/ns/kube-system/agent/admin' } }, 'spiffe://x/ns/y/agent/z');
  assert.equal(r.headers['x-mandate-identity'], 'spiffe://cluster.local/ns/kube-system/agent/admin');
  assert.equal(r.sourceInstance, 'spiffe://x/ns/y/agent/z', 'the source principal is informational only');
  assert.equal('identity' in r, false);
  assert.equal('peer' in r, false);
});

test('an unusable request id is dropped, not propagated', () => {
  assert.equal(ok({ ...base, id: 'has space' }).id, '');
  assert.equal(ok({ ...base, id: 'x'.repeat(300) }).id, '');
});
