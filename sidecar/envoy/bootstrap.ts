// The Envoy v3 bootstrap of one agent pod, as proto3 JSON (proto field names, `@type` on every
// typed_config). Pure: the same input gives the same bytes, so golden files can be exact.
//
// Traffic the init container redirects to the outbound listener is matched, per destination port, in
// this order (Envoy picks the most specific port, then server name, then transport protocol):
//   TLS, SNI of an intercepted tool → TLS terminated with the host's interception certificate → HTTP
//     ext_authz → router → the tool's cluster, which originates TLS (SNI = host, certificate checked
//     against the upstream CA file and the host name);
//   plain text on a port of a plain-HTTP tool → HTTP ext_authz → router → the tool's cluster;
//   any other TLS → network ext_authz (Mandate decides from the SNI) → tcp_proxy to the original
//     destination;
//   anything else has no filter chain: Envoy closes the connection. Within an HTTP chain a host that
//     is no tool's gets a 403 from a catch-all virtual host even if the check let it through.
// ext_authz never fails open, and every call to Mandate is mTLS with the pod's SVID.
import { compare, resolveInput } from './input.ts';
import type { BootstrapInput, ResolvedInput, ResolvedRoute } from './input.ts';
import { BUNDLE_SECRET, SVID_SECRET, hostLabel, interceptSecretName, sdsSecretConfig } from './sds.ts';

export const AUTHZ_CLUSTER = 'mandate_authz';
export const ORIGINAL_DST_CLUSTER = 'original_dst';
export const OUTBOUND_LISTENER = 'outbound';
const DNS_CACHE = Object.freeze({ name: 'mandate_tools', dns_lookup_family: 'V4_PREFERRED' });

const type = (name: string): string => `type.googleapis.com/${name}`;
const T = Object.freeze({
  originalDst: type('envoy.extensions.filters.listener.original_dst.v3.OriginalDst'),
  tlsInspector: type('envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector'),
  hcm: type('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager'),
  httpExtAuthz: type('envoy.extensions.filters.http.ext_authz.v3.ExtAuthz'),
  httpExtAuthzPerRoute: type('envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute'),
  networkExtAuthz: type('envoy.extensions.filters.network.ext_authz.v3.ExtAuthz'),
  router: type('envoy.extensions.filters.http.router.v3.Router'),
  dfpFilter: type('envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig'),
  dfpCluster: type('envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig'),
  tcpProxy: type('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy'),
  downstreamTls: type('envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext'),
  upstreamTls: type('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext'),
  httpOptions: type('envoy.extensions.upstreams.http.v3.HttpProtocolOptions'),
});

const seconds = (ms: number): string => `${ms / 1000}s`;

/** Name of the cluster that carries `route` upstream. */
export function toolClusterName(route: Pick<ResolvedRoute, 'toolKey' | 'host' | 'port'>): string {
  return `tool|${route.toolKey}|${route.host}|${route.port}`;
}

/** Builds the bootstrap for one pod. Throws BootstrapInputError on an input Envoy could not load. */
export function buildBootstrap(input: BootstrapInput): Record<string, unknown> {
  const r = resolveInput(input);
  return {
    node: {
      id: `${r.identity.podName}.${r.identity.namespace}`,
      cluster: `${r.identity.name}.${r.identity.namespace}`,
      metadata: {
        'mandate.dev/agent-identity': r.identity.name,
        'mandate.dev/namespace': r.identity.namespace,
        'mandate.dev/pod-uid': r.identity.podUid,
        'mandate.dev/spiffe-id': r.identity.spiffeId,
      },
    },
    static_resources: {
      listeners: [outboundListener(r), healthListener(r)],
      clusters: [authzCluster(r), originalDstCluster(r), ...r.routes.map((route) => toolCluster(r, route))],
    },
    // Owner-only socket (0600) on the sidecars' volume; see BootstrapPaths.adminSocket.
    admin: { address: { pipe: { path: r.paths.adminSocket, mode: 0o600 } } },
  };
}

/**
 * The kubelet's readiness probe target: `/ready` answers 200, anything else 404, all from Envoy
 * itself (no upstream). Envoy activates listeners only after its clusters and SDS secrets have
 * warmed, so an answer means the proxy is ready to carry the app's traffic.
 */
function healthListener(r: ResolvedInput): Record<string, unknown> {
  return {
    name: 'health',
    address: { socket_address: { address: '0.0.0.0', port_value: r.ports.health } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: 'health',
              route_config: {
                name: 'health',
                virtual_hosts: [
                  {
                    name: 'health',
                    domains: ['*'],
                    routes: [
                      { match: { path: '/ready' }, direct_response: { status: 200, body: { inline_string: 'ready\n' } } },
                      { match: { prefix: '/' }, direct_response: { status: 404 } },
                    ],
                  },
                ],
              },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          },
        ],
      },
    ],
  };
}

function outboundListener(r: ResolvedInput): Record<string, unknown> {
  const ports = [...new Set(r.routes.filter((x) => x.scheme === 'http' || x.intercept).map((x) => x.port))].sort((a, b) => a - b);
  const chains: Record<string, unknown>[] = [];
  for (const port of ports) {
    for (const route of r.routes.filter((x) => x.intercept && x.port === port).sort(byHost)) chains.push(interceptChain(r, route));
    const plain = r.routes.filter((x) => x.scheme === 'http' && x.port === port);
    if (plain.length > 0) chains.push(plainChain(r, port, plain));
    // A chain with a destination port hides the port-less chains from that port's traffic.
    chains.push(sniChain(r, port));
  }
  chains.push(sniChain(r, undefined));
  return {
    name: OUTBOUND_LISTENER,
    address: { socket_address: { address: '0.0.0.0', port_value: r.ports.outbound } },
    listener_filters: [
      { name: 'envoy.filters.listener.original_dst', typed_config: { '@type': T.originalDst } },
      { name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': T.tlsInspector } },
    ],
    filter_chains: chains,
  };
}

function byHost(a: ResolvedRoute, b: ResolvedRoute): number {
  return compare(a.host, b.host) || compare(a.toolKey, b.toolKey);
}

function interceptChain(r: ResolvedInput, route: ResolvedRoute): Record<string, unknown> {
  return {
    name: `intercept|${route.host}|${route.port}`,
    filter_chain_match: { destination_port: route.port, server_names: [route.host], transport_protocol: 'tls' },
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': T.downstreamTls,
        common_tls_context: {
          tls_params: { tls_minimum_protocol_version: 'TLSv1_2' },
          tls_certificate_sds_secret_configs: [sdsSecretConfig(r.paths, interceptSecretName(route.host))],
          alpn_protocols: ['h2', 'http/1.1'],
        },
      },
    },
    // Only this host's virtual host: a Host header naming another tool than the SNI gets the 403.
    filters: [httpConnectionManager(r, `intercept_${hostLabel(route.host)}_${route.port}`, [route])],
  };
}

function plainChain(r: ResolvedInput, port: number, routes: readonly ResolvedRoute[]): Record<string, unknown> {
  return {
    name: `http|${port}`,
    filter_chain_match: { destination_port: port, transport_protocol: 'raw_buffer' },
    filters: [httpConnectionManager(r, `http_${port}`, routes)],
  };
}

function sniChain(r: ResolvedInput, port: number | undefined): Record<string, unknown> {
  return {
    name: port === undefined ? 'tls' : `tls|${port}`,
    filter_chain_match: port === undefined ? { transport_protocol: 'tls' } : { destination_port: port, transport_protocol: 'tls' },
    filters: [
      {
        name: 'envoy.filters.network.ext_authz',
        typed_config: {
          '@type': T.networkExtAuthz,
          stat_prefix: 'mandate_sni',
          grpc_service: authzGrpcService(r),
          failure_mode_allow: false,
          transport_api_version: 'V3',
        },
      },
      {
        name: 'envoy.filters.network.tcp_proxy',
        typed_config: {
          '@type': T.tcpProxy,
          stat_prefix: 'outbound_tls',
          cluster: ORIGINAL_DST_CLUSTER,
          idle_timeout: seconds(r.timeouts.idleMs),
        },
      },
    ],
  };
}

function authzGrpcService(r: ResolvedInput): Record<string, unknown> {
  return { envoy_grpc: { cluster_name: AUTHZ_CLUSTER }, timeout: seconds(r.timeouts.authzMs) };
}

function httpConnectionManager(r: ResolvedInput, prefix: string, routes: readonly ResolvedRoute[]): Record<string, unknown> {
  const sorted = [...routes].sort(byHost);
  const filters: Record<string, unknown>[] = [
    {
      name: 'envoy.filters.http.ext_authz',
      typed_config: {
        '@type': T.httpExtAuthz,
        grpc_service: authzGrpcService(r),
        transport_api_version: 'V3',
        failure_mode_allow: false,
      },
    },
  ];
  if (sorted.some((x) => x.wildcard)) {
    // After ext_authz, so a denied request never costs a DNS lookup.
    filters.push({ name: 'envoy.filters.http.dynamic_forward_proxy', typed_config: { '@type': T.dfpFilter, dns_cache_config: DNS_CACHE } });
  }
  filters.push({ name: 'envoy.filters.http.router', typed_config: { '@type': T.router } });
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': T.hcm,
      stat_prefix: prefix,
      codec_type: 'AUTO',
      // Mandate classifies the path Envoy forwards; normalising first means both see the same one.
      normalize_path: true,
      merge_slashes: true,
      stream_idle_timeout: seconds(r.timeouts.idleMs),
      route_config: {
        name: prefix,
        ignore_port_in_host_matching: true,
        virtual_hosts: [...sorted.map((x) => virtualHost(r, x)), denyVirtualHost()],
      },
      http_filters: filters,
    },
  };
}

function virtualHost(r: ResolvedInput, route: ResolvedRoute): Record<string, unknown> {
  const entry: Record<string, unknown> = {
    match: { prefix: '/' },
    // MCP responses may be long-lived event streams: only the idle timeout applies to them.
    route: { cluster: toolClusterName(route), timeout: route.mcp ? '0s' : seconds(r.timeouts.requestMs) },
  };
  if (route.sendBody) {
    entry.typed_per_filter_config = {
      'envoy.filters.http.ext_authz': {
        '@type': T.httpExtAuthzPerRoute,
        check_settings: {
          with_request_body: { max_request_bytes: r.maxRequestBytes, allow_partial_message: true, pack_as_bytes: true },
        },
      },
    };
  }
  return { name: toolClusterName(route), domains: [route.host], routes: [entry] };
}

function denyVirtualHost(): Record<string, unknown> {
  return {
    name: 'deny',
    domains: ['*'],
    routes: [
      {
        match: { prefix: '/' },
        direct_response: { status: 403, body: { inline_string: '{"error":"destination is not a registered tool"}\n' } },
        response_headers_to_add: [{ header: { key: 'content-type', value: 'application/json' } }],
      },
    ],
  };
}

function authzCluster(r: ResolvedInput): Record<string, unknown> {
  return {
    name: AUTHZ_CLUSTER,
    type: 'STRICT_DNS',
    connect_timeout: seconds(r.timeouts.connectMs),
    load_assignment: endpoints(AUTHZ_CLUSTER, r.authz.host, r.authz.port),
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': T.httpOptions, explicit_http_config: { http2_protocol_options: {} } },
    },
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': T.upstreamTls,
        sni: r.authz.sni ?? r.authz.host,
        common_tls_context: {
          tls_params: { tls_minimum_protocol_version: 'TLSv1_2' },
          tls_certificate_sds_secret_configs: [sdsSecretConfig(r.paths, SVID_SECRET)],
          combined_validation_context: {
            default_validation_context: {
              match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: r.authz.serverSpiffeId } }],
            },
            validation_context_sds_secret_config: sdsSecretConfig(r.paths, BUNDLE_SECRET),
          },
          alpn_protocols: ['h2'],
        },
      },
    },
  };
}

function originalDstCluster(r: ResolvedInput): Record<string, unknown> {
  return { name: ORIGINAL_DST_CLUSTER, type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: seconds(r.timeouts.connectMs) };
}

function endpoints(cluster: string, host: string, port: number): Record<string, unknown> {
  return { cluster_name: cluster, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }] };
}

function upstreamTls(r: ResolvedInput, route: ResolvedRoute): Record<string, unknown> {
  const validation: Record<string, unknown> = { trusted_ca: { filename: r.paths.upstreamCaFile } };
  const context: Record<string, unknown> = {
    '@type': T.upstreamTls,
    common_tls_context: { tls_params: { tls_minimum_protocol_version: 'TLSv1_2' }, validation_context: validation },
  };
  // A wildcard tool's SNI and expected name come from each request's Host (auto_sni, auto_san_validation).
  if (!route.wildcard) {
    context.sni = route.host;
    validation.match_typed_subject_alt_names = [{ san_type: 'DNS', matcher: { exact: route.host } }];
  }
  return { name: 'envoy.transport_sockets.tls', typed_config: context };
}

function toolCluster(r: ResolvedInput, route: ResolvedRoute): Record<string, unknown> {
  const name = toolClusterName(route);
  const cluster: Record<string, unknown> = { name, connect_timeout: seconds(r.timeouts.connectMs) };
  if (route.wildcard) {
    // No single name to resolve: the host of each request (already checked by Mandate) is resolved.
    cluster.lb_policy = 'CLUSTER_PROVIDED';
    cluster.cluster_type = { name: 'envoy.clusters.dynamic_forward_proxy', typed_config: { '@type': T.dfpCluster, dns_cache_config: DNS_CACHE } };
    if (route.scheme === 'https') {
      cluster.typed_extension_protocol_options = {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': T.httpOptions,
          upstream_http_protocol_options: { auto_sni: true, auto_san_validation: true },
          explicit_http_config: { http_protocol_options: {} },
        },
      };
    }
  } else {
    // The tool's own DNS name, never the address the app dialled: a forged Host cannot steer the
    // request (and an injected credential) to another server.
    cluster.type = 'LOGICAL_DNS';
    cluster.dns_lookup_family = 'V4_PREFERRED';
    cluster.load_assignment = endpoints(name, route.host, route.port);
  }
  if (route.scheme === 'https') cluster.transport_socket = upstreamTls(r, route);
  return cluster;
}
