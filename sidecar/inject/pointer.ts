// RFC 6901 JSON pointers and the RFC 6902 operations the injector emits.

export type JsonPatchOp =
  | { readonly op: 'add'; readonly path: string; readonly value: unknown }
  | { readonly op: 'replace'; readonly path: string; readonly value: unknown }
  | { readonly op: 'remove'; readonly path: string };

/** One reference token: `~` → `~0`, `/` → `~1` (so `mandate.dev/status` → `mandate.dev~1status`). */
export const escapeToken = (token: string): string => token.replace(/~/g, '~0').replace(/\//g, '~1');

export const unescapeToken = (token: string): string => token.replace(/~1/g, '/').replace(/~0/g, '~');

export const pointer = (...tokens: readonly (string | number)[]): string => tokens.map((t) => `/${escapeToken(String(t))}`).join('');
