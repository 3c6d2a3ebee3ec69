// Which version of each object to serve when some do not compile. A cluster is many teams' objects,
// and one team's broken policy must not freeze everyone else's changes (the file store can be all
// or nothing; a cluster cannot). So an object whose current version has a problem is served at
// its last good version (the last one that was part of a published snapshot), and an object that
// never compiled is left out; everything else is served as it is now.
//
// The risk this leaves, and why it is acceptable: leaving out a never-compiled object fails open
// when that object is a Deny (or RequireApproval) policy: its rules do not apply until it is fixed.
// The same holds after a controller restart for an object that was being served at its last good
// version, because last-good versions live in memory. Such objects are rare: the API server
// validates every object against the CRD schema and its CEL rules before it exists, so what is
// left is mostly a `when` expression that does not compile, which the validating webhook refuses at
// admission. What remains is reported as a problem (a Compiled=False condition and an Event on the
// object). Two cases are made safe here instead of documented:
// - a kill switch never waits for a fix: an identity whose broken current version says
//   `suspended: true` is served suspended, whatever its last good version says;
// - leaving out a tool or an identity fails closed (unknown destination / unknown caller).
import type { AgentIdentity, AgentPolicy, AgentTool, MandateResource } from '../../../crds/generated/types.ts';
import { deepFreeze } from '../freeze.ts';
import type { ManifestProblem } from '../store/snapshot.ts';

export type ServedKind = MandateResource['kind'];

export interface ServedSets {
  /** Keyed by `namespace/name`. */
  readonly identities: ReadonlyMap<string, AgentIdentity>;
  readonly policies: ReadonlyMap<string, AgentPolicy>;
  readonly tools: ReadonlyMap<string, AgentTool>;
}

/** An object not served at its current version. */
export interface Fallback {
  /** `Kind namespace/name`, as in ManifestProblem.object. */
  readonly object: string;
  readonly served: 'lastGood' | 'none';
  /** resourceVersion of the current (not served) version. */
  readonly currentResourceVersion: string;
  /** resourceVersion and generation of the version served instead, for `lastGood`. */
  readonly resourceVersion?: string;
  readonly generation?: number;
  /** True when a broken identity's `suspended: true` was applied to its last good version. */
  readonly suspendedOverride?: boolean;
}

export interface ResolveInput {
  readonly current: ServedSets;
  /** Last good version of each object, keyed by `Kind namespace/name`. */
  readonly lastGood: ReadonlyMap<string, MandateResource>;
  /** Says why a version cannot be served before compiling it (e.g. its Secrets are not readable yet). */
  readonly blocked?: (object: MandateResource) => { readonly field: string; readonly message: string } | undefined;
  /** Compiles to try before giving up. Default 8. */
  readonly maxAttempts?: number;
}

export interface Resolution<R> {
  /** What the last attempt returned, when it reported no problem; undefined: nothing publishable. */
  readonly result?: R;
  readonly served: ServedSets;
  /** Problems of current versions (and any that could not be tied to an object). */
  readonly problems: readonly ManifestProblem[];
  /** Keyed by `Kind namespace/name`. */
  readonly fallbacks: ReadonlyMap<string, Fallback>;
  readonly attempts: number;
}

interface Entry {
  readonly kind: ServedKind;
  readonly key: string;
  readonly current: MandateResource;
  served: MandateResource | undefined;
  state: 'current' | 'lastGood' | 'none';
  suspendedOverride: boolean;
}

export const labelOf = (kind: string, key: string): string => `${kind} ${key}`;
const versionOf = (o: MandateResource): string => o.metadata.resourceVersion ?? '';

/** The last good version to serve in place of `current`: for an identity, suspended if `current` is. */
function substitute(kind: ServedKind, current: MandateResource, good: MandateResource): { object: MandateResource; suspendedOverride: boolean } {
  if (kind === 'AgentIdentity' && (current as AgentIdentity).spec.suspended === true && (good as AgentIdentity).spec.suspended !== true) {
    const g = good as AgentIdentity;
    return { object: deepFreeze({ ...g, spec: { ...g.spec, suspended: true } }), suspendedOverride: true };
  }
  return { object: good, suspendedOverride: false };
}

function setsOf(entries: Iterable<Entry>): ServedSets {
  const identities = new Map<string, AgentIdentity>();
  const policies = new Map<string, AgentPolicy>();
  const tools = new Map<string, AgentTool>();
  for (const e of entries) {
    if (e.served === undefined) continue;
    if (e.kind === 'AgentIdentity') identities.set(e.key, e.served as AgentIdentity);
    else if (e.kind === 'AgentPolicy') policies.set(e.key, e.served as AgentPolicy);
    else tools.set(e.key, e.served as AgentTool);
  }
  return { identities, policies, tools };
}

const problemId = (p: ManifestProblem): string => `${p.object}\0${p.field}\0${p.message}`;

/**
 * Compiles the current versions; when that reports problems, serves the named objects at their
 * last good version (or not at all) and compiles again, until an attempt is clean. An object whose
 * current version is already its last good one is only dropped if the problem persists once the
 * other named objects are dealt with (its problem may be caused by them, e.g. a host conflict with
 * a new tool). A problem that names no served object cannot be isolated: nothing is publishable.
 */
export function resolveServed<R extends { readonly problems: readonly ManifestProblem[] }>(input: ResolveInput, attempt: (served: ServedSets) => R): Resolution<R> {
  const entries = new Map<string, Entry>();
  const reported = new Map<string, ManifestProblem>();
  const report = (p: ManifestProblem): void => void reported.set(problemId(p), p);
  const add = (kind: ServedKind, map: ReadonlyMap<string, MandateResource>): void => {
    for (const [key, current] of map) entries.set(labelOf(kind, key), { kind, key, current, served: current, state: 'current', suspendedOverride: false });
  };
  add('AgentIdentity', input.current.identities);
  add('AgentPolicy', input.current.policies);
  add('AgentTool', input.current.tools);

  // Only the same object: one deleted and created again under its name starts with no last good version.
  const lastGoodOf = (label: string, e: Entry): MandateResource | undefined => {
    const good = input.lastGood.get(label);
    if (good === undefined) return undefined;
    const uid = e.current.metadata.uid;
    return uid !== undefined && good.metadata.uid !== undefined && uid !== good.metadata.uid ? undefined : good;
  };
  const fallBack = (label: string, e: Entry): void => {
    const good = lastGoodOf(label, e);
    if (e.state === 'current' && good !== undefined && versionOf(good) !== versionOf(e.current) && input.blocked?.(good) === undefined) {
      const s = substitute(e.kind, e.current, good);
      e.served = s.object;
      e.suspendedOverride = s.suspendedOverride;
      e.state = 'lastGood';
    } else {
      e.served = undefined;
      e.state = 'none';
      e.suspendedOverride = false;
    }
  };

  if (input.blocked) {
    for (const [label, e] of entries) {
      const why = input.blocked(e.current);
      if (why === undefined) continue;
      report({ object: label, field: why.field, message: why.message });
      fallBack(label, e);
    }
  }

  const max = input.maxAttempts ?? 8;
  let result: R | undefined;
  let attempts = 0;
  let served = setsOf(entries.values());
  while (attempts < max) {
    served = setsOf(entries.values());
    attempts++;
    let out: R;
    try {
      out = attempt(served);
    } catch (err) {
      report({ object: 'snapshot', field: '', message: `compilation failed: ${(err as Error).message}` });
      break;
    }
    if (out.problems.length === 0) {
      result = out;
      break;
    }
    const named = new Set<string>();
    let isolated = true;
    for (const p of out.problems) {
      const e = entries.get(p.object);
      if (e === undefined || e.state === 'none') {
        report(p);
        isolated = false;
        continue;
      }
      // A problem of a substituted old version is not news: its current version's problem is reported.
      if (e.state === 'current') report(p);
      named.add(p.object);
    }
    if (!isolated) break;

    let changed = false;
    const proven: string[] = [];
    for (const label of named) {
      const e = entries.get(label) as Entry;
      const good = lastGoodOf(label, e);
      if (e.state === 'current' && good !== undefined && versionOf(good) === versionOf(e.current) && attempts === 1) {
        proven.push(label);
        continue;
      }
      fallBack(label, e);
      changed = true;
    }
    if (!changed) for (const label of proven) fallBack(label, entries.get(label) as Entry);
  }

  const fallbacks = new Map<string, Fallback>();
  for (const [label, e] of entries) {
    if (e.state === 'current') continue;
    fallbacks.set(label, {
      object: label,
      served: e.state,
      currentResourceVersion: versionOf(e.current),
      ...(e.served !== undefined
        ? { resourceVersion: versionOf(e.served), ...(e.served.metadata.generation !== undefined ? { generation: e.served.metadata.generation } : {}) }
        : {}),
      ...(e.suspendedOverride ? { suspendedOverride: true } : {}),
    });
  }
  return { ...(result !== undefined ? { result } : {}), served, problems: [...reported.values()], fallbacks, attempts };
}

/** Labels of every object in `sets`, for pruning last-good entries of deleted objects. */
export function labelsOf(sets: ServedSets): Set<string> {
  const out = new Set<string>();
  for (const key of sets.identities.keys()) out.add(labelOf('AgentIdentity', key));
  for (const key of sets.policies.keys()) out.add(labelOf('AgentPolicy', key));
  for (const key of sets.tools.keys()) out.add(labelOf('AgentTool', key));
  return out;
}
