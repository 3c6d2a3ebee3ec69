// Rule schedules: days of the week and a wall-clock window in an IANA time zone. Times are wall
// clock in that zone, so a window keeps its local hours across DST changes (on the day clocks go
// forward, 02:00-03:00 simply does not occur; on the day they go back, it occurs twice and both
// count). A window whose start is after its end runs past midnight, and its `days` name the day
// the window starts: Fri 22:00-06:00 covers Saturday 03:00.
import type { RuleSchedule } from '../../../crds/generated/types.ts';
import { MandateError } from '../errors.ts';

const DAY_NAMES = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] as const;
const DAY_INDEX: Readonly<Record<string, number>> = Object.fromEntries(DAY_NAMES.map((d, i) => [d, i]));
const ALL_DAYS = 0b1111111;
const START = /^([01][0-9]|2[0-3]):([0-5][0-9])$/;
const END = /^(([01][0-9]|2[0-3]):([0-5][0-9])|24:00)$/;

export interface CompiledSchedule {
  /** Canonical IANA name of the zone. */
  readonly timeZone: string;
  contains(now: Date): boolean;
}

/**
 * The local weekday and minute of the day in one zone, cached for the last UTC minute asked
 * about: Intl formatting costs microseconds, and checks arrive many per minute. Every zone offset
 * in use since 1972 is a whole number of minutes, so one UTC minute is one local minute.
 */
class ZoneClock {
  readonly format: Intl.DateTimeFormat;
  private minuteKey = Number.NaN;
  weekday = 0; // 0 = Monday
  minute = 0; // minutes since local midnight

  constructor(format: Intl.DateTimeFormat) {
    this.format = format;
  }

  update(ms: number): void {
    const key = Math.floor(ms / 60_000);
    if (key === this.minuteKey) return;
    let weekday = 0;
    let hour = 0;
    let minute = 0;
    for (const part of this.format.formatToParts(ms)) {
      if (part.type === 'weekday') weekday = DAY_INDEX[part.value] ?? 0;
      else if (part.type === 'hour') hour = Number(part.value) % 24;
      else if (part.type === 'minute') minute = Number(part.value);
    }
    this.weekday = weekday;
    this.minute = hour * 60 + minute;
    this.minuteKey = key;
  }
}

// One clock per canonical zone name; bounded by the IANA database.
const clocks = new Map<string, ZoneClock>();

function clockFor(timeZone: string): ZoneClock {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
    });
  } catch {
    throw new MandateError('POLICY_COMPILE', `unknown time zone "${timeZone}" (use an IANA name such as Europe/Berlin)`, {
      field: '.timeZone',
    });
  }
  const canonical = format.resolvedOptions().timeZone;
  let clock = clocks.get(canonical);
  if (!clock) {
    clock = new ZoneClock(format);
    clocks.set(canonical, clock);
  }
  return clock;
}

function minutes(text: string, pattern: RegExp, field: string, what: string): number {
  if (!pattern.test(text)) {
    throw new MandateError('POLICY_COMPILE', `${what} must be HH:MM (${field === '.end' ? '00:00 to 24:00' : '00:00 to 23:59'}), got "${text}"`, {
      field,
    });
  }
  const [h, m] = text.split(':').map(Number) as [number, number];
  return h * 60 + m;
}

/** Compiles a schedule; throws MandateError POLICY_COMPILE with `details.field` relative to the schedule. */
export function compileSchedule(schedule: RuleSchedule): CompiledSchedule {
  if (typeof schedule.timeZone !== 'string' || schedule.timeZone === '') {
    throw new MandateError('POLICY_COMPILE', 'timeZone is required', { field: '.timeZone' });
  }
  const clock = clockFor(schedule.timeZone);
  let days = ALL_DAYS;
  if (schedule.days !== undefined) {
    days = 0;
    for (const [i, day] of schedule.days.entries()) {
      const index = DAY_INDEX[day];
      if (index === undefined) {
        throw new MandateError('POLICY_COMPILE', `"${day}" is not a day (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)`, { field: `.days[${i}]` });
      }
      days |= 1 << index;
    }
    if (days === 0) throw new MandateError('POLICY_COMPILE', 'days is empty, so the rule would never apply', { field: '.days' });
  }
  if ((schedule.start === undefined) !== (schedule.end === undefined)) {
    const field = schedule.start === undefined ? '.start' : '.end';
    throw new MandateError('POLICY_COMPILE', 'start and end go together', { field });
  }
  const timeZone = clock.format.resolvedOptions().timeZone;
  if (schedule.start === undefined || schedule.end === undefined) {
    return Object.freeze({
      timeZone,
      contains(now: Date): boolean {
        clock.update(now.getTime());
        return (days & (1 << clock.weekday)) !== 0;
      },
    });
  }
  const start = minutes(schedule.start, START, '.start', 'start');
  const end = minutes(schedule.end, END, '.end', 'end');
  if (start === end) {
    throw new MandateError('POLICY_COMPILE', 'start equals end, so the window is empty (use 00:00 to 24:00 for a whole day)', {
      field: '.end',
    });
  }
  if (start < end) {
    return Object.freeze({
      timeZone,
      contains(now: Date): boolean {
        clock.update(now.getTime());
        return (days & (1 << clock.weekday)) !== 0 && clock.minute >= start && clock.minute < end;
      },
    });
  }
  return Object.freeze({
    timeZone,
    contains(now: Date): boolean {
      clock.update(now.getTime());
      const { weekday, minute } = clock;
      if (minute >= start) return (days & (1 << weekday)) !== 0;
      if (minute < end) return (days & (1 << (weekday + 6) % 7)) !== 0;
      return false;
    },
  });
}
