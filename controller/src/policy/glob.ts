// Action globs over dotted action names: `*` is exactly one segment, `**` any number of segments
// (zero included), anything else a literal segment. Globs are compiled once per policy change and
// then only run on a miss of the per-identity candidate memo, but they must still be exact: a glob
// that over-matches widens an Allow rule.
import { MandateError } from '../errors.ts';

/** The CRD's pattern for a glob; AgentTool action names use the same segment alphabet. */
const GLOB_PATTERN = /^(\*\*|\*|[a-z0-9_]+)(\.(\*\*|\*|[a-z0-9_]+))*$/;
const MAX_GLOB_LENGTH = 128;

export interface ActionGlob {
  readonly source: string;
  /** True for globs without wildcards: they match one action name only. */
  readonly literal: boolean;
  matches(action: string): boolean;
}

const ONE = 1; // `*`
const ANY = 2; // `**`
type Token = string | typeof ONE | typeof ANY;

/** Compiles a glob, or throws MandateError POLICY_COMPILE saying what is wrong with it. */
export function compileGlob(source: string): ActionGlob {
  if (source.length > MAX_GLOB_LENGTH) {
    throw new MandateError('POLICY_COMPILE', `action glob is longer than ${MAX_GLOB_LENGTH} characters`);
  }
  if (!GLOB_PATTERN.test(source)) {
    throw new MandateError(
      'POLICY_COMPILE',
      `action glob "${source}" is invalid: use dotted segments of [a-z0-9_], "*" for one segment or "**" for any number`,
    );
  }
  const tokens: Token[] = [];
  for (const segment of source.split('.')) {
    const token: Token = segment === '**' ? ANY : segment === '*' ? ONE : segment;
    // `**.**` means the same as `**`; collapsing keeps the matcher's backtracking linear.
    if (token === ANY && tokens[tokens.length - 1] === ANY) continue;
    tokens.push(token);
  }
  return Object.freeze({ source, literal: tokens.every((t) => typeof t === 'string'), matches: buildMatcher(source, tokens) });
}

function buildMatcher(source: string, tokens: readonly Token[]): (action: string) => boolean {
  if (tokens.every((t) => typeof t === 'string')) return (action) => action === source;
  if (tokens.length === 1 && tokens[0] === ANY) return (action) => action.length > 0;
  const last = tokens.length - 1;
  // `a.b.**`: a prefix test, the most common wildcard form in policies.
  if (tokens[last] === ANY && tokens.slice(0, last).every((t) => typeof t === 'string')) {
    const prefix = tokens.slice(0, last).join('.');
    const dotted = `${prefix}.`;
    return (action) => action === prefix || action.startsWith(dotted);
  }
  return (action) => matchSegments(tokens, action.split('.'));
}

/**
 * Wildcard matching over segments, with `**` as the star and `*` as the single-item wildcard:
 * greedy with one backtrack point (the last `**` seen), which is exact for this pattern class and
 * O(tokens × segments) in the worst case.
 */
function matchSegments(tokens: readonly Token[], segments: readonly string[]): boolean {
  let t = 0;
  let s = 0;
  let starT = -1;
  let starS = 0;
  while (s < segments.length) {
    const token = tokens[t];
    if (t < tokens.length && token !== ANY && (token === ONE || token === segments[s])) {
      t++;
      s++;
    } else if (t < tokens.length && token === ANY) {
      starT = t++;
      starS = s;
    } else if (starT >= 0) {
      t = starT + 1;
      s = ++starS;
    } else {
      return false;
    }
  }
  while (t < tokens.length && tokens[t] === ANY) t++;
  return t === tokens.length;
}

/** True when any of the globs matches the action. */
export function anyGlobMatches(globs: readonly ActionGlob[], action: string): boolean {
  for (const glob of globs) if (glob.matches(action)) return true;
  return false;
}
