// Durations as the CRDs write them: one or more `<digits><unit>` groups, unit s, m or h
// (`30s`, `5m`, `1h30m`). The CRD pattern admits `0s` and absurd sizes; the caller bounds the result.

const DURATION = /^([0-9]+(s|m|h))+$/;
const GROUP = /([0-9]+)(s|m|h)/g;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (text.length > 64 || !DURATION.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(GROUP)) total += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return Number.isSafeInteger(total) ? total : undefined;
}
