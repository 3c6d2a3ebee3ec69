import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RuleSchedule } from '../../crds/generated/types.ts';
import { compileSchedule } from '../../controller/src/policy/schedule.ts';
import { isMandateError } from '../../controller/src/errors.ts';

const at = (iso: string): Date => new Date(iso);

function refused(schedule: RuleSchedule): { message: string; field: unknown } {
  try {
    compileSchedule(schedule);
  } catch (err) {
    assert.ok(isMandateError(err, 'POLICY_COMPILE'));
    return { message: err.message, field: err.details.field };
  }
  assert.fail('schedule compiled');
}

describe('schedules', () => {
  it('applies office hours in the schedule time zone', () => {
    const s = compileSchedule({ timeZone: 'Europe/Berlin', days: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri'], start: '09:00', end: '17:00' });
    assert.equal(s.timeZone, 'Europe/Berlin');
    // 2025-01-06 is a Monday; Berlin is UTC+1 in winter.
    assert.equal(s.contains(at('2025-01-06T07:59:00Z')), false); // 08:59 local
    assert.equal(s.contains(at('2025-01-06T08:00:00Z')), true); // 09:00 local
    assert.equal(s.contains(at('2025-01-06T15:59:59Z')), true); // 16:59:59 local
    assert.equal(s.contains(at('2025-01-06T16:00:00Z')), false); // 17:00 local: end is exclusive
    assert.equal(s.contains(at('2025-01-11T10:00:00Z')), false); // Saturday
    // Summer: UTC+2.
    assert.equal(s.contains(at('2025-07-07T07:30:00Z')), true); // 09:30 local, Monday
    assert.equal(s.contains(at('2025-07-07T15:30:00Z')), false); // 17:30 local
  });

  it('uses the local day, not the UTC day', () => {
    const s = compileSchedule({ timeZone: 'America/New_York', days: ['Fri'] });
    // Saturday 02:00 UTC is still Friday 21:00 in New York.
    assert.equal(s.contains(at('2025-01-11T02:00:00Z')), true);
    assert.equal(s.contains(at('2025-01-11T06:00:00Z')), false);
    const tokyo = compileSchedule({ timeZone: 'Asia/Tokyo', days: ['Sat'] });
    assert.equal(tokyo.contains(at('2025-01-10T16:00:00Z')), true); // Saturday 01:00 in Tokyo
  });

  it('handles offsets that are not whole hours', () => {
    const kathmandu = compileSchedule({ timeZone: 'Asia/Kathmandu', start: '09:00', end: '09:30' }); // UTC+5:45
    assert.equal(kathmandu.contains(at('2025-01-06T03:15:00Z')), true); // 09:00 local
    assert.equal(kathmandu.contains(at('2025-01-06T03:14:00Z')), false);
    assert.equal(kathmandu.contains(at('2025-01-06T03:45:00Z')), false); // 09:30 local
  });

  it('wraps windows past midnight, keyed to the day the window starts', () => {
    const s = compileSchedule({ timeZone: 'UTC', days: ['Fri'], start: '22:00', end: '06:00' });
    assert.equal(s.contains(at('2025-01-10T21:59:00Z')), false); // Fri 21:59
    assert.equal(s.contains(at('2025-01-10T22:00:00Z')), true); // Fri 22:00
    assert.equal(s.contains(at('2025-01-11T03:00:00Z')), true); // Sat 03:00, window started Friday
    assert.equal(s.contains(at('2025-01-11T06:00:00Z')), false); // Sat 06:00: end is exclusive
    assert.equal(s.contains(at('2025-01-11T22:30:00Z')), false); // Sat 22:30: Saturday is not listed
    assert.equal(s.contains(at('2025-01-10T03:00:00Z')), false); // Fri 03:00 belongs to Thursday's window
  });

  it('treats 24:00 as the end of the day', () => {
    const s = compileSchedule({ timeZone: 'UTC', days: ['Mon'], start: '18:00', end: '24:00' });
    assert.equal(s.contains(at('2025-01-06T23:59:59Z')), true);
    assert.equal(s.contains(at('2025-01-07T00:00:00Z')), false);
    const whole = compileSchedule({ timeZone: 'UTC', start: '00:00', end: '24:00' });
    assert.equal(whole.contains(at('2025-01-07T00:00:00Z')), true);
    assert.equal(whole.contains(at('2025-01-07T23:59:00Z')), true);
  });

  it('uses wall-clock time across DST changes', () => {
    // Europe/Berlin springs forward on 2025-03-30 at 01:00 UTC (02:00 → 03:00 local).
    const early = compileSchedule({ timeZone: 'Europe/Berlin', days: ['Sun'], start: '01:00', end: '03:30' });
    assert.equal(early.contains(at('2025-03-30T00:30:00Z')), true); // 01:30 CET
    assert.equal(early.contains(at('2025-03-30T01:00:00Z')), true); // 03:00 CEST
    assert.equal(early.contains(at('2025-03-30T01:30:00Z')), false); // 03:30 CEST
    // And falls back on 2025-10-26 at 01:00 UTC: 02:30 local happens twice, both count.
    const twice = compileSchedule({ timeZone: 'Europe/Berlin', days: ['Sun'], start: '02:00', end: '03:00' });
    assert.equal(twice.contains(at('2025-10-26T00:30:00Z')), true); // 02:30 CEST
    assert.equal(twice.contains(at('2025-10-26T01:30:00Z')), true); // 02:30 CET
    assert.equal(twice.contains(at('2025-10-26T02:00:00Z')), false); // 03:00 CET
  });

  it('defaults to every day and to the whole day', () => {
    const days = compileSchedule({ timeZone: 'UTC', days: ['Sat', 'Sun'] });
    assert.equal(days.contains(at('2025-01-11T00:00:00Z')), true);
    assert.equal(days.contains(at('2025-01-12T23:59:00Z')), true);
    assert.equal(days.contains(at('2025-01-13T00:00:00Z')), false);
    const hours = compileSchedule({ timeZone: 'UTC', start: '08:00', end: '09:00' });
    for (let d = 6; d <= 12; d++) assert.equal(hours.contains(at(`2025-01-${String(d).padStart(2, '0')}T08:30:00Z`)), true);
  });

  it('answers consistently when asked about times out of order (the per-zone cache)', () => {
    const s = compileSchedule({ timeZone: 'Europe/Berlin', start: '09:00', end: '10:00' });
    const t1 = at('2025-01-06T08:30:00Z');
    const t2 = at('2025-01-06T12:30:00Z');
    for (let i = 0; i < 5; i++) {
      assert.equal(s.contains(t1), true);
      assert.equal(s.contains(t2), false);
    }
  });

  it('refuses bad schedules with the field at fault', () => {
    assert.deepEqual(refused({ timeZone: 'Mars/Olympus' }).field, '.timeZone');
    assert.match(refused({ timeZone: 'Mars/Olympus' }).message, /unknown time zone "Mars\/Olympus"/);
    assert.equal(refused({ timeZone: '' }).field, '.timeZone');
    assert.equal(refused({ timeZone: 'UTC', start: '09:00' }).field, '.end');
    assert.equal(refused({ timeZone: 'UTC', end: '09:00' }).field, '.start');
    assert.equal(refused({ timeZone: 'UTC', start: '24:00', end: '09:00' }).field, '.start');
    assert.equal(refused({ timeZone: 'UTC', start: '9:00', end: '10:00' }).field, '.start');
    assert.equal(refused({ timeZone: 'UTC', start: '09:00', end: '24:30' }).field, '.end');
    assert.match(refused({ timeZone: 'UTC', start: '09:00', end: '09:00' }).message, /window is empty/);
    assert.match(refused({ timeZone: 'UTC', days: [] }).message, /never apply/);
    assert.equal(refused({ timeZone: 'UTC', days: ['Mon', 'Funday' as 'Mon'] }).field, '.days[1]');
  });
});
