// The generated bootstrap must load in Envoy: decoded strictly with Envoy's own protos, every Any
// resolved. Plus the security invariants a well-formed but wrong bootstrap could break.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTHZ_CLUSTER, ORIGINAL_DST_CLUSTER, buildBootstrap } from '../../sidecar/envoy/bootstrap.ts';
import { BootstrapInputError } from '../../sidecar/envoy/input.ts';
import type { BootstrapInput } from '../../sidecar/envoy/input.ts';
import { buildSdsFiles } from '../../sidecar/envoy/sds.ts';
import { goldenCases, readGoldenInput, strictProblems } from './envoy-bootstrap-strict.ts';

const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const EXT_AUTHZ_TYPES = new Set([
  'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  'type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz',
]);
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

type Json = Record<string, unknown>;
const clone = <T>(v: T): T => structuredClone(v);

/** Every object inside `value`, depth first. */
function objects(value: unknown): Json[] {
  if (Array.isArray(value)) return value.flatMap(objects);
  if (typeof value !== 'object' || value === null) return [];
  return [value as Json, ...Object.values(value).flatMap(objects)];
}

function get(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const p of path) v = (v as Record<string | number, unknown> | undefined)?.[p];
  return v;
}

function listener(b: Json): Json {
  return get(b, 'static_resources', 'listeners', 0) as Json;
}

function chains(b: Json): Json[] {
  return get(listener(b), 'filter_chains') as Json[];
}

/** Envoy finds an extension by its @type; the name is for humans, and must not say something else. */
const EXTENSION_TYPES: Record<string, string> = {
  'envoy.filters.listener.original_dst': 'envoy.extensions.filters.listener.original_dst.v3.OriginalDst',
  'envoy.filters.listener.tls_inspector': 'envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
  'envoy.filters.network.http_connection_manager': 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  'envoy.filters.network.ext_authz': 'envoy.extensions.filters.network.ext_authz.v3.ExtAuthz',
  'envoy.filters.network.tcp_proxy': 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  'envoy.filters.http.ext_authz': 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  'envoy.filters.http.dynamic_forward_proxy': 'envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig',
  'envoy.filters.http.router': 'envoy.extensions.filters.http.router.v3.Router',
  'envoy.clusters.dynamic_forward_proxy': 'envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig',
};
const TRANSPORT_SOCKET_TYPES = new Set(['DownstreamTlsContext', 'UpstreamTlsContext'].map((n) => `type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.${n}`));

const baseInput = (): BootstrapInput => readGoldenInput('https-intercept-body');

for (const name of goldenCases()) {
  test(`strict decode: ${name} bootstrap and SDS files load as Envoy's protos`, () => {
    const input = readGoldenInput(name);
    assert.deepEqual(strictProblems(BOOTSTRAP, buildBootstrap(input)), []);
    const sds = buildSdsFiles(input);
    assert.ok(Object.keys(sds).length >= 2);
    for (const [file, content] of Object.entries(sds)) {
      assert.deepEqual(strictProblems('envoy.service.discovery.v3.DiscoveryResponse', JSON.parse(content)), [], file);
    }
  });

  test(`invariants: ${name}`, () => {
    const b = buildBootstrap(readGoldenInput(name));
    // Admin is a 0600 Unix socket on the sidecars' volume: no TCP port the app could reach.
    assert.match(get(b, 'admin', 'address', 'pipe', 'path') as string, /^\/var\/run\/mandate\//);
    assert.equal(get(b, 'admin', 'address', 'pipe', 'mode'), 0o600);
    assert.equal(get(b, 'admin', 'address', 'socket_address'), undefined);
    // The health listener answers from Envoy itself and leads nowhere.
    const health = get(b, 'static_resources', 'listeners', 1) as Json;
    assert.equal(health.name, 'health');
    assert.ok(objects(health).every((o) => o.cluster === undefined && o.cluster_name === undefined));
    // Every ext_authz fails closed, talks to Mandate and has a deadline.
    const authz = objects(b).filter((o) => EXT_AUTHZ_TYPES.has(o['@type'] as string));
    assert.ok(authz.length > 0);
    for (const a of authz) {
      assert.equal(a.failure_mode_allow, false);
      assert.equal(get(a, 'grpc_service', 'envoy_grpc', 'cluster_name'), AUTHZ_CLUSTER);
      assert.match(get(a, 'grpc_service', 'timeout') as string, /^\d+(\.\d+)?s$/);
    }
    assert.equal(objects(b).filter((o) => 'failure_mode_allow' in o && o.failure_mode_allow !== false).length, 0);
    // No catch-all: no default chain, and every chain's first check is ext_authz.
    const l = listener(b);
    assert.equal(l.default_filter_chain, undefined);
    assert.equal(get(l, 'use_original_dst') ?? 'original_dst filter', 'original_dst filter');
    assert.deepEqual((l.listener_filters as Json[]).map((f) => f.name), ['envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector']);
    for (const chain of chains(b)) {
      assert.ok(chain.filter_chain_match, `${chain.name as string} matches everything`);
      const first = get(chain, 'filters', 0, 'typed_config') as Json;
      const firstCheck = first['@type'] === 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager'
        ? get(first, 'http_filters', 0, 'typed_config', '@type')
        : first['@type'];
      assert.ok(EXT_AUTHZ_TYPES.has(firstCheck as string), `${chain.name as string} does not check first`);
      // A catch-all virtual host only ever answers 403 itself.
      for (const vh of (get(first, 'route_config', 'virtual_hosts') as Json[] | undefined) ?? []) {
        if ((vh.domains as string[]).includes('*')) {
          assert.deepEqual((vh.routes as Json[]).map((r) => get(r, 'direct_response', 'status')), [403]);
        }
      }
    }
    // The last chain takes any other TLS, by SNI, to the original destination only.
    const last = chains(b).at(-1) as Json;
    assert.deepEqual(last.filter_chain_match, { transport_protocol: 'tls' });
    assert.equal(get(last, 'filters', 1, 'typed_config', 'cluster'), ORIGINAL_DST_CLUSTER);
    // Mandate is reached over mTLS with the pod's SVID, checking the server's SPIFFE ID.
    const authzCluster = (get(b, 'static_resources', 'clusters') as Json[]).find((c) => c.name === AUTHZ_CLUSTER);
    const tls = get(authzCluster, 'transport_socket', 'typed_config', 'common_tls_context') as Json;
    assert.equal(get(tls, 'tls_certificate_sds_secret_configs', 0, 'name'), 'mandate-svid');
    assert.match(get(tls, 'combined_validation_context', 'default_validation_context', 'match_typed_subject_alt_names', 0, 'matcher', 'exact') as string, /^spiffe:\/\//);
    assert.ok(get(authzCluster, 'typed_extension_protocol_options', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions', 'explicit_http_config', 'http2_protocol_options'));
    // Every named extension carries the type its name says.
    for (const o of objects(b).filter((x) => typeof x.name === 'string' && typeof x.typed_config === 'object')) {
      const url = get(o, 'typed_config', '@type') as string;
      if (o.name === 'envoy.transport_sockets.tls') assert.ok(TRANSPORT_SOCKET_TYPES.has(url), url);
      else assert.equal(url, `type.googleapis.com/${EXTENSION_TYPES[o.name as string] ?? `unknown extension ${o.name as string}`}`);
    }
  });
}

test('the body goes to Mandate exactly for tools that read body parameters and for MCP', () => {
  const bodyHosts = (b: Json): string[] =>
    objects(b)
      .filter((o) => Array.isArray(o.domains) && objects(o.routes).some((x) => x['@type'] === PER_ROUTE))
      .flatMap((o) => o.domains as string[])
      .sort();
  assert.deepEqual(bodyHosts(buildBootstrap(readGoldenInput('https-intercept-body'))), ['api.github.com']);
  assert.deepEqual(bodyHosts(buildBootstrap(readGoldenInput('mcp-tool'))), ['mcp.payments.example.com']);
  assert.deepEqual(bodyHosts(buildBootstrap(readGoldenInput('plain-http-tool'))), []);
  const settings = objects(buildBootstrap(readGoldenInput('custom-ports'))).find((o) => o['@type'] === PER_ROUTE);
  assert.deepEqual(get(settings, 'check_settings', 'with_request_body'), { max_request_bytes: 65536, allow_partial_message: true, pack_as_bytes: true });
});

test('intercepted HTTPS tools terminate TLS with their own certificate and originate TLS upstream', () => {
  const b = buildBootstrap(baseInput());
  const github = chains(b).find((c) => c.name === 'intercept|api.github.com|443') as Json;
  assert.deepEqual(github.filter_chain_match, { destination_port: 443, server_names: ['api.github.com'], transport_protocol: 'tls' });
  assert.equal(get(github, 'transport_socket', 'typed_config', 'common_tls_context', 'tls_certificate_sds_secret_configs', 0, 'name'), 'intercept-api.github.com');
  const cluster = (get(b, 'static_resources', 'clusters') as Json[]).find((c) => c.name === 'tool|agents/github|api.github.com|443') as Json;
  assert.equal(cluster.type, 'LOGICAL_DNS');
  assert.equal(get(cluster, 'transport_socket', 'typed_config', 'sni'), 'api.github.com');
  assert.equal(get(cluster, 'transport_socket', 'typed_config', 'common_tls_context', 'validation_context', 'trusted_ca', 'filename'), '/etc/ssl/certs/ca-certificates.crt');
});

test('non-intercepted TLS tools get no terminating chain and no cluster of their own path', () => {
  const b = buildBootstrap(readGoldenInput('sni-only-tls'));
  assert.deepEqual(chains(b).map((c) => c.name), ['tls']);
  assert.equal(Object.keys(buildSdsFiles(readGoldenInput('sni-only-tls'))).some((f) => f.startsWith('intercept-')), false);
});

test('output is deterministic and independent of the order of tools and hosts', () => {
  const input = baseInput();
  const reversed: BootstrapInput = { ...input, tools: [...input.tools].reverse().map((t) => ({ ...t, spec: { ...t.spec, hosts: [...t.spec.hosts].reverse() as [string, ...string[]] } })) };
  assert.equal(JSON.stringify(buildBootstrap(reversed)), JSON.stringify(buildBootstrap(input)));
  assert.deepEqual(buildSdsFiles(reversed), buildSdsFiles(input));
  const frozen = Object.freeze(clone(input));
  assert.equal(JSON.stringify(buildBootstrap(frozen)), JSON.stringify(buildBootstrap(input)));
});

test('the strict walker catches an unknown field at any depth', () => {
  const b = buildBootstrap(baseInput());
  const top = { ...clone(b), bogus: 1 };
  assert.match(strictProblems(BOOTSTRAP, top).join('\n'), /Bootstrap\.bogus: unknown field/);
  const deep = clone(b);
  (get(deep, 'static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config') as Json).stat_prefx = 'typo';
  assert.match(strictProblems(BOOTSTRAP, deep).join('\n'), /stat_prefx: unknown field of \.envoy\.extensions\.filters\.network\.http_connection_manager/);
  const inAuthz = clone(b);
  const extAuthz = objects(inAuthz).find((o) => EXT_AUTHZ_TYPES.has(o['@type'] as string)) as Json;
  extAuthz.failure_mode_deny = true;
  assert.match(strictProblems(BOOTSTRAP, inAuthz).join('\n'), /failure_mode_deny: unknown field/);
  const inMapOfAny = clone(b);
  const perRoute = objects(inMapOfAny).find((o) => o['@type'] === PER_ROUTE) as Json;
  (perRoute.check_settings as Json).with_body = true;
  assert.match(strictProblems(BOOTSTRAP, inMapOfAny).join('\n'), /typed_per_filter_config\["envoy\.filters\.http\.ext_authz"\]<ExtAuthzPerRoute>\.check_settings\.with_body: unknown field/);
});

test('the strict walker catches an unknown @type, a wrong enum, a bad duration and two oneof members', () => {
  const b = buildBootstrap(baseInput());
  const unknownType = clone(b);
  (get(unknownType, 'static_resources', 'listeners', 0, 'listener_filters', 1, 'typed_config') as Json)['@type'] =
    'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspectr';
  assert.match(strictProblems(BOOTSTRAP, unknownType).join('\n'), /unknown type .*TlsInspectr/);
  const noType = clone(b);
  delete (get(noType, 'static_resources', 'listeners', 0, 'listener_filters', 0, 'typed_config') as Json)['@type'];
  assert.match(strictProblems(BOOTSTRAP, noType).join('\n'), /an Any needs an @type/);
  const badEnum = clone(b);
  (get(badEnum, 'static_resources', 'clusters', 0) as Json).type = 'STRICT_DNSS';
  assert.match(strictProblems(BOOTSTRAP, badEnum).join('\n'), /"STRICT_DNSS" is not a value of enum/);
  const badDuration = clone(b);
  (get(badDuration, 'static_resources', 'clusters', 0) as Json).connect_timeout = '5 seconds';
  assert.match(strictProblems(BOOTSTRAP, badDuration).join('\n'), /connect_timeout: expected a duration/);
  const twoOneof = clone(b);
  (get(twoOneof, 'static_resources', 'clusters', 1) as Json).cluster_type = { name: 'x' };
  assert.match(strictProblems(BOOTSTRAP, twoOneof).join('\n'), /oneof cluster_discovery_type already has type/);
  const badPort = clone(b);
  (get(badPort, 'static_resources', 'listeners', 1, 'address', 'socket_address') as Json).port_value = -1;
  assert.match(strictProblems(BOOTSTRAP, badPort).join('\n'), /port_value: expected a uint32/);
  const badSecret = clone(JSON.parse(buildSdsFiles(baseInput())['mandate-svid.json'] as string) as Json);
  (get(badSecret, 'resources', 0, 'tls_certificate') as Json).private_keys = {};
  assert.match(strictProblems('envoy.service.discovery.v3.DiscoveryResponse', badSecret).join('\n'), /private_keys: unknown field/);
});

test('the walker enforces the protoc-gen-validate rules Envoy checks at load time', () => {
  const b = buildBootstrap(baseInput());
  const noPrefix = clone(b);
  delete (get(noPrefix, 'static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config') as Json).stat_prefix;
  assert.match(strictProblems(BOOTSTRAP, noPrefix).join('\n'), /stat_prefix: violates \(validate\.rules\)\.string\.min_len/);
  const noRoutes = clone(b);
  delete (get(noRoutes, 'static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config') as Json).route_config;
  assert.match(strictProblems(BOOTSTRAP, noRoutes).join('\n'), /oneof route_specifier is required/);
  const bigPort = clone(b);
  (get(bigPort, 'static_resources', 'listeners', 1, 'address', 'socket_address') as Json).port_value = 70000;
  assert.match(strictProblems(BOOTSTRAP, bigPort).join('\n'), /port_value: violates \(validate\.rules\)\.uint32\.lte/);
  const zeroTimeout = clone(b);
  (get(zeroTimeout, 'static_resources', 'clusters', 0) as Json).connect_timeout = '0s';
  assert.match(strictProblems(BOOTSTRAP, zeroTimeout).join('\n'), /connect_timeout: violates \(validate\.rules\)\.duration\.gt/);
  const noDomains = clone(b);
  (objects(noDomains).find((o) => Array.isArray(o.domains)) as Json).domains = [];
  assert.match(strictProblems(BOOTSTRAP, noDomains).join('\n'), /domains: violates \(validate\.rules\)\.repeated\.min_items/);
});

test('the walker accepts lowerCamel JSON names, as Envoy does', () => {
  assert.deepEqual(strictProblems(BOOTSTRAP, { admin: { address: { socketAddress: { address: '127.0.0.1', portValue: 1 } } } }), []);
});

test('inputs Envoy could not load, or that would open a hole, are refused with the field named', () => {
  const base = baseInput();
  const cases: [string, BootstrapInput][] = [
    ['ports', { ...base, ports: { outbound: 15001, health: 15001 } }],
    ['ports.health', { ...base, ports: { health: 70000 } }],
    ['authz.serverSpiffeId', { ...base, authz: { ...base.authz, serverSpiffeId: 'mandate' } }],
    ['identity.spiffeId', { ...base, identity: { ...base.identity, spiffeId: 'https://x' } }],
    ['paths.sdsDir', { ...base, paths: { sdsDir: 'relative/dir' } }],
    ['timeouts.authzMs', { ...base, timeouts: { authzMs: 0 } }],
    ['tools[0].spec.hosts[0]', { ...base, tools: [{ key: 'agents/x', spec: { hosts: ['Bad_Host'], actions: [{ name: 'a' }] } }] }],
    ['tools[1].key', { ...base, tools: [base.tools[0]!, base.tools[0]!] }],
    ['tools[1].spec.hosts[0]', { ...base, tools: [base.tools[0]!, { key: 'agents/other', spec: { hosts: ['api.github.com'], actions: [{ name: 'a' }] } }] }],
  ];
  for (const [path, input] of cases) {
    assert.throws(() => buildBootstrap(input), (e) => e instanceof BootstrapInputError && e.path === path && e.code === 'BOOTSTRAP_INPUT_INVALID', path);
  }
});
