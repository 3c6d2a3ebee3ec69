// The tools the load benchmark's policies refer to: the example AgentTools from policies/ when
// there are any, topped up with generated ones so the fleet always has a realistic breadth
// (HTTP and MCP, reads, writes, irreversible actions, credentials). Each action is described
// with what the scaler needs to write rules and requests for it: how to build a request that
// classifies to it, which parameters it carries and of what kind.
import type { AgentTool, ToolAction } from '../../crds/generated/types.ts';

export interface ParamSpec {
  readonly name: string;
  readonly source: 'path' | 'rest' | 'query' | 'body' | 'mcp';
  /** Numeric params (amounts, limits) get JSON numbers; only body and MCP params can be numbers. */
  readonly numeric: boolean;
}

export interface CatalogAction {
  /** metadata.name of the tool. */
  readonly tool: string;
  readonly name: string;
  readonly protocol: 'HTTP' | 'MCP';
  readonly host: string;
  readonly scheme: 'http' | 'https';
  readonly port?: number;
  readonly http?: NonNullable<ToolAction['http']>;
  readonly mcpPath?: string;
  readonly mcpTool?: string;
  readonly params: readonly ParamSpec[];
  readonly read: boolean;
  /** Irreversible or restricted: the fleet guardrails deny these. */
  readonly dangerous: boolean;
}

export interface CatalogTool {
  readonly name: string;
  readonly protocol: 'HTTP' | 'MCP';
  readonly actions: readonly CatalogAction[];
  readonly origin: 'example' | 'generated';
}

const NUMERIC_NAME = /(^|_)(amount|count|limit|qty|quantity|total|price|max_tokens|max_rows|attendees_count)$/;
const READ_WORD = /(^|[._])(get|list|search|read|query|find|history|fetch|describe|view|show)($|[._])/;
const DANGEROUS_VERB = /\.(delete|remove|merge|drop|destroy|purge|revoke|payout)$/;

function concreteHost(pattern: string): string {
  // `*.example.com` matches one or more labels; any label will do for a request.
  return pattern.startsWith('*.') ? `api.${pattern.slice(2)}` : pattern;
}

function paramsOf(action: ToolAction): ParamSpec[] {
  const out: ParamSpec[] = [];
  if (action.http) {
    for (const m of action.http.path.matchAll(/\{([A-Za-z0-9_]+)(\.\.\.)?\}/g)) {
      out.push({ name: m[1]!, source: m[2] ? 'rest' : 'path', numeric: false });
    }
    for (const q of action.http.query ?? []) out.push({ name: q, source: 'query', numeric: false });
    for (const b of action.http.body ?? []) out.push({ name: b, source: 'body', numeric: !b.includes('.') && NUMERIC_NAME.test(b) });
  }
  if (action.mcp) {
    // Without an explicit list every top-level argument is a param; the bench sends a query.
    for (const a of action.mcp.arguments ?? ['query']) out.push({ name: a, source: 'mcp', numeric: !a.includes('.') && NUMERIC_NAME.test(a) });
  }
  return out;
}

export function catalogTool(tool: AgentTool, origin: CatalogTool['origin']): CatalogTool {
  const spec = tool.spec;
  const protocol = spec.protocol ?? 'HTTP';
  const host = concreteHost(spec.hosts[0]);
  const scheme = spec.scheme ?? 'https';
  const actions = spec.actions.map((a): CatalogAction => {
    const read = a.http ? a.http.method === 'GET' || a.http.method === 'HEAD' : READ_WORD.test(a.name) || READ_WORD.test(a.mcp?.tool ?? '');
    return {
      tool: tool.metadata.name,
      name: a.name,
      protocol: a.mcp ? 'MCP' : 'HTTP',
      host,
      scheme,
      ...(spec.port !== undefined ? { port: spec.port } : {}),
      ...(a.http ? { http: a.http } : {}),
      ...(a.mcp ? { mcpTool: a.mcp.tool, ...(spec.mcpPath !== undefined ? { mcpPath: spec.mcpPath } : {}) } : {}),
      params: paramsOf(a),
      read,
      dangerous: a.reversible === false || a.classification === 'restricted' || DANGEROUS_VERB.test(a.name),
    };
  });
  return { name: tool.metadata.name, protocol, actions, origin };
}

type ActionDef = Omit<ToolAction, 'http' | 'mcp'> & {
  http?: NonNullable<ToolAction['http']>;
  mcp?: NonNullable<ToolAction['mcp']>;
};

interface ToolDef {
  readonly name: string;
  readonly description: string;
  readonly protocol: 'HTTP' | 'MCP';
  readonly credential: boolean;
  readonly actions: readonly ActionDef[];
}

const get = (path: string, query?: string[]): NonNullable<ToolAction['http']> => ({ method: 'GET', path, ...(query ? { query } : {}) });
const send = (method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: string[]): NonNullable<ToolAction['http']> => ({ method, path, ...(body ? { body } : {}) });

// A fleet's worth of typical agent tools. Hosts live under .bench.internal so they never collide
// with the examples' hosts.
const generatedDefs: readonly ToolDef[] = [
  {
    name: 'payments', description: 'Payments API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'payments.charge.create', classification: 'confidential', reversible: true, http: send('POST', '/v1/charges', ['amount', 'currency', 'customer']) },
      { name: 'payments.charge.get', classification: 'confidential', http: get('/v1/charges/{charge}') },
      { name: 'payments.charge.list', classification: 'confidential', http: get('/v1/charges', ['customer', 'limit']) },
      { name: 'payments.refund.create', classification: 'confidential', reversible: true, http: send('POST', '/v1/refunds', ['charge', 'amount']) },
      { name: 'payments.payout.create', classification: 'restricted', reversible: false, http: send('POST', '/v1/payouts', ['amount', 'destination']) },
      { name: 'payments.customer.delete', classification: 'confidential', reversible: false, http: send('DELETE', '/v1/customers/{customer}') },
    ],
  },
  {
    name: 'git', description: 'Source hosting API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'git.repo.get', classification: 'internal', http: get('/repos/{owner}/{repo}') },
      { name: 'git.pr.list', classification: 'internal', http: get('/repos/{owner}/{repo}/pulls', ['state']) },
      { name: 'git.pr.create', classification: 'internal', reversible: true, http: send('POST', '/repos/{owner}/{repo}/pulls', ['title', 'head', 'base']) },
      { name: 'git.pr.merge', classification: 'internal', reversible: false, http: send('PUT', '/repos/{owner}/{repo}/pulls/{number}/merge') },
      { name: 'git.issue.comment', classification: 'internal', reversible: true, http: send('POST', '/repos/{owner}/{repo}/issues/{number}/comments', ['body']) },
      { name: 'git.contents.get', classification: 'internal', http: get('/repos/{owner}/{repo}/contents/{path...}') },
      { name: 'git.repo.delete', classification: 'internal', reversible: false, http: send('DELETE', '/repos/{owner}/{repo}') },
    ],
  },
  {
    name: 'crm', description: 'CRM MCP server', protocol: 'MCP', credential: true,
    actions: [
      { name: 'crm.contact.search', classification: 'confidential', mcp: { tool: 'search_contacts', arguments: ['query', 'limit'] } },
      { name: 'crm.contact.get', classification: 'confidential', mcp: { tool: 'get_contact', arguments: ['contact_id'] } },
      { name: 'crm.contact.update', classification: 'confidential', reversible: true, mcp: { tool: 'update_contact', arguments: ['contact_id', 'email'] } },
      { name: 'crm.deal.close', classification: 'confidential', reversible: true, mcp: { tool: 'close_deal', arguments: ['deal_id', 'amount'] } },
      { name: 'crm.contact.delete', classification: 'confidential', reversible: false, mcp: { tool: 'delete_contact', arguments: ['contact_id'] } },
    ],
  },
  {
    name: 'tickets', description: 'Issue tracker API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'tickets.issue.search', classification: 'internal', http: get('/rest/api/search', ['jql', 'limit']) },
      { name: 'tickets.issue.get', classification: 'internal', http: get('/rest/api/issue/{key}') },
      { name: 'tickets.issue.create', classification: 'internal', reversible: true, http: send('POST', '/rest/api/issue', ['project', 'summary', 'priority']) },
      { name: 'tickets.issue.transition', classification: 'internal', reversible: true, http: send('POST', '/rest/api/issue/{key}/transitions', ['transition']) },
    ],
  },
  {
    name: 'chat', description: 'Team chat API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'chat.message.post', classification: 'internal', reversible: true, http: send('POST', '/api/chat.postMessage', ['channel', 'text']) },
      { name: 'chat.channel.list', classification: 'internal', http: get('/api/conversations.list', ['limit']) },
      { name: 'chat.channel.history', classification: 'confidential', http: get('/api/conversations.history', ['channel', 'limit']) },
    ],
  },
  {
    name: 'mail', description: 'Outbound mail API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'mail.message.send', classification: 'confidential', reversible: false, http: send('POST', '/v3/mail/send', ['to', 'subject']) },
      { name: 'mail.message.list', classification: 'confidential', http: get('/v3/messages', ['limit']) },
    ],
  },
  {
    name: 'docs', description: 'Knowledge base MCP server', protocol: 'MCP', credential: false,
    actions: [
      { name: 'docs.page.search', classification: 'internal', mcp: { tool: 'search_pages', arguments: ['query', 'limit'] } },
      { name: 'docs.page.get', classification: 'internal', mcp: { tool: 'get_page', arguments: ['page_id'] } },
      { name: 'docs.page.update', classification: 'internal', reversible: true, mcp: { tool: 'update_page', arguments: ['page_id', 'title'] } },
    ],
  },
  {
    name: 'warehouse', description: 'Data warehouse MCP server', protocol: 'MCP', credential: true,
    actions: [
      { name: 'warehouse.query.run', classification: 'confidential', mcp: { tool: 'run_query', arguments: ['sql', 'max_rows'] } },
      { name: 'warehouse.table.list', classification: 'internal', mcp: { tool: 'list_tables', arguments: ['schema'] } },
      { name: 'warehouse.table.drop', classification: 'restricted', reversible: false, mcp: { tool: 'drop_table', arguments: ['table'] } },
    ],
  },
  {
    name: 'storage', description: 'Object storage API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'storage.object.get', classification: 'internal', http: get('/objects/{bucket}/{key...}') },
      { name: 'storage.object.put', classification: 'internal', reversible: true, http: send('PUT', '/objects/{bucket}/{key...}') },
      { name: 'storage.object.delete', classification: 'internal', reversible: false, http: send('DELETE', '/objects/{bucket}/{key...}') },
      { name: 'storage.bucket.list', classification: 'internal', http: get('/buckets') },
    ],
  },
  {
    name: 'llm', description: 'Model gateway API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'llm.chat.complete', classification: 'confidential', reversible: true, http: send('POST', '/v1/chat/completions', ['model', 'max_tokens']) },
      { name: 'llm.embedding.create', classification: 'confidential', reversible: true, http: send('POST', '/v1/embeddings', ['model']) },
    ],
  },
  {
    name: 'calendar', description: 'Calendar API', protocol: 'HTTP', credential: true,
    actions: [
      { name: 'calendar.event.list', classification: 'internal', http: get('/calendars/{calendar}/events', ['timeMin']) },
      { name: 'calendar.event.create', classification: 'internal', reversible: true, http: send('POST', '/calendars/{calendar}/events', ['summary', 'attendees_count']) },
      { name: 'calendar.event.delete', classification: 'internal', reversible: false, http: send('DELETE', '/calendars/{calendar}/events/{event}') },
    ],
  },
  {
    name: 'search', description: 'Web search API', protocol: 'HTTP', credential: true,
    actions: [{ name: 'search.web.query', classification: 'public', http: get('/v1/search', ['q', 'count']) }],
  },
];

export const generatedToolCount = generatedDefs.length;

export function credentialSecretName(tool: string): string {
  return `${tool}-api`;
}

/** The first `count` generated tools as AgentTool manifests in `namespace`. */
export function generatedTools(namespace: string, count: number): AgentTool[] {
  return generatedDefs.slice(0, count).map((def): AgentTool => ({
    apiVersion: 'mandate.dev/v1alpha1',
    kind: 'AgentTool',
    metadata: { name: def.name, namespace, labels: { 'bench.mandate.dev/generated': 'true' } },
    spec: {
      description: def.description,
      protocol: def.protocol,
      hosts: [def.protocol === 'MCP' ? `${def.name}-mcp.bench.internal` : `${def.name}.bench.internal`],
      scheme: 'https',
      intercept: true,
      ...(def.protocol === 'MCP' ? { mcpPath: '/mcp' } : {}),
      ...(def.credential
        ? { credential: { secretRef: { name: credentialSecretName(def.name), key: 'token' }, header: 'authorization', template: 'Bearer {{secret}}' } }
        : {}),
      actions: def.actions as AgentTool['spec']['actions'],
    },
  }));
}
