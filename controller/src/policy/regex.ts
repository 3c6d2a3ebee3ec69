// The CEL library runs `matches()` on JavaScript's backtracking RegExp engine, and the string it
// runs on comes from the agent's request. A pattern such as `^(a+)+$` then lets a (possibly
// prompt-injected) agent burn seconds of CPU in the authz service per call. Policies are therefore
// held to patterns without catastrophic backtracking: no backreferences, and no unbounded
// quantifier over a group that itself repeats or alternates. This is the classic star-height
// test; it refuses a few harmless patterns (`(ab|cd)+`) in exchange for a guarantee.

/** Returns why the pattern is refused, or undefined when it is acceptable. */
export function unsafeRegexReason(pattern: string): string | undefined {
  try {
    new RegExp(pattern);
  } catch (err) {
    return `invalid regular expression: ${(err as Error).message}`;
  }
  interface Frame {
    repeats: boolean; // contains a quantifier
    alternates: boolean; // contains `|`
  }
  const stack: Frame[] = [{ repeats: false, alternates: false }];
  // What the last atom was, for the quantifier that may follow it.
  let lastGroup: Frame | undefined;
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i] as string;
    const top = stack[stack.length - 1] as Frame;
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') return 'backreferences are not allowed in matches()';
      lastGroup = undefined;
      i += 2;
      continue;
    }
    if (c === '[') {
      i = skipClass(pattern, i);
      lastGroup = undefined;
      continue;
    }
    if (c === '(') {
      stack.push({ repeats: false, alternates: false });
      lastGroup = undefined;
      // Skip the group's kind marker (`?:`, `?=`, `?!`, `?<=`, `?<!`, `?<name>`): it is no quantifier.
      const prefix = /^\((\?(:|=|!|<=|<!|<[A-Za-z_$][\w$]*>))?/.exec(pattern.slice(i, i + 40));
      i += prefix ? prefix[0].length : 1;
      continue;
    }
    if (c === ')') {
      const closed = stack.pop() as Frame;
      lastGroup = closed;
      const parent = stack[stack.length - 1] as Frame;
      parent.repeats ||= closed.repeats;
      i++;
      continue;
    }
    if (c === '|') {
      top.alternates = true;
      lastGroup = undefined;
      i++;
      continue;
    }
    const quantifier = readQuantifier(pattern, i);
    if (quantifier) {
      if (quantifier.unbounded && lastGroup && (lastGroup.repeats || lastGroup.alternates)) {
        return 'nested or alternating repetition (like (a+)+ or (a|b)*) is not allowed in matches(): it can backtrack catastrophically';
      }
      top.repeats = true;
      lastGroup = undefined;
      i = quantifier.end;
      continue;
    }
    lastGroup = undefined;
    i++;
  }
  return undefined;
}

function skipClass(pattern: string, start: number): number {
  let i = start + 1;
  if (pattern[i] === '^') i++;
  if (pattern[i] === ']') i++;
  while (i < pattern.length && pattern[i] !== ']') i += pattern[i] === '\\' ? 2 : 1;
  return i + 1;
}

function readQuantifier(pattern: string, i: number): { unbounded: boolean; end: number } | undefined {
  const c = pattern[i];
  let end: number;
  let unbounded: boolean;
  if (c === '*' || c === '+') {
    unbounded = true;
    end = i + 1;
  } else if (c === '?') {
    unbounded = false;
    end = i + 1;
  } else if (c === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
    if (!m) return undefined;
    // `{2,}` and large upper bounds behave like `+` for backtracking purposes.
    unbounded = m[2] !== undefined && (m[3] === '' || Number(m[3]) > 16);
    end = i + m[0].length;
  } else {
    return undefined;
  }
  if (pattern[end] === '?') end++; // lazy variant
  return { unbounded, end };
}
