import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { anyGlobMatches, compileGlob } from '../../controller/src/policy/glob.ts';
import { isMandateError } from '../../controller/src/errors.ts';

const matches = (glob: string, action: string): boolean => compileGlob(glob).matches(action);

describe('action globs', () => {
  it('matches literal globs exactly', () => {
    assert.equal(matches('github.pr.merge', 'github.pr.merge'), true);
    assert.equal(matches('github.pr.merge', 'github.pr.merged'), false);
    assert.equal(matches('github.pr.merge', 'github.pr'), false);
    assert.equal(matches('github.pr', 'github.pr.merge'), false);
    assert.equal(compileGlob('github.pr.merge').literal, true);
    assert.equal(compileGlob('github.*').literal, false);
  });

  it('lets * stand for exactly one segment', () => {
    assert.equal(matches('github.*.merge', 'github.pr.merge'), true);
    assert.equal(matches('github.*.merge', 'github.merge'), false);
    assert.equal(matches('github.*.merge', 'github.a.b.merge'), false);
    assert.equal(matches('github.*', 'github.pr'), true);
    assert.equal(matches('github.*', 'github'), false);
    assert.equal(matches('github.*', 'github.pr.merge'), false);
    assert.equal(matches('*', 'github'), true);
    assert.equal(matches('*', 'github.pr'), false);
    assert.equal(matches('*.*', 'a.b'), true);
    assert.equal(matches('*.*', 'a.b.c'), false);
  });

  it('lets ** stand for any number of segments, zero included', () => {
    assert.equal(matches('github.**', 'github'), true);
    assert.equal(matches('github.**', 'github.pr'), true);
    assert.equal(matches('github.**', 'github.pr.merge'), true);
    assert.equal(matches('github.**', 'githubx.pr'), false);
    assert.equal(matches('github.**', 'gitlab.pr'), false);
    assert.equal(matches('**', 'anything.at.all'), true);
    assert.equal(matches('**', 'x'), true);
    assert.equal(matches('**.delete', 'github.repo.delete'), true);
    assert.equal(matches('**.delete', 'delete'), true);
    assert.equal(matches('**.delete', 'github.delete.repo'), false);
    assert.equal(matches('github.**.delete', 'github.delete'), true);
    assert.equal(matches('github.**.delete', 'github.repo.branch.delete'), true);
    assert.equal(matches('github.**.delete', 'github.repo.deleted'), false);
  });

  it('combines ** with * and repeated **', () => {
    assert.equal(matches('**.*.merge', 'github.pr.merge'), true);
    assert.equal(matches('**.*.merge', 'merge'), false);
    assert.equal(matches('a.**.b.**.c', 'a.b.c'), true);
    assert.equal(matches('a.**.b.**.c', 'a.x.b.y.z.c'), true);
    assert.equal(matches('a.**.b.**.c', 'a.x.c.b'), false);
    assert.equal(matches('a.**.**.b', 'a.b'), true);
    assert.equal(matches('**.**', 'a.b.c'), true);
    assert.equal(matches('*.**', 'a'), true);
    assert.equal(matches('**.*', 'a'), true);
    assert.equal(matches('*.**.*', 'a'), false);
    assert.equal(matches('*.**.*', 'a.b'), true);
  });

  it('agrees with a reference matcher on every pattern and name over a small alphabet', () => {
    // Reference: a recursive definition straight from the spec.
    const ref = (p: string[], s: string[]): boolean => {
      if (p.length === 0) return s.length === 0;
      const [head, ...rest] = p;
      if (head === '**') return ref(rest, s) || (s.length > 0 && ref(p, s.slice(1)));
      if (s.length === 0) return false;
      return (head === '*' || head === s[0]) && ref(rest, s.slice(1));
    };
    const tokens = ['a', 'b', '*', '**'];
    const patterns: string[][] = [[]];
    for (let len = 1; len <= 4; len++) {
      for (const prev of patterns.filter((p) => p.length === len - 1)) for (const t of tokens) patterns.push([...prev, t]);
    }
    const names: string[][] = [[]];
    for (let len = 1; len <= 4; len++) {
      for (const prev of names.filter((n) => n.length === len - 1)) for (const t of ['a', 'b']) names.push([...prev, t]);
    }
    let checked = 0;
    for (const p of patterns.filter((x) => x.length > 0)) {
      const glob = compileGlob(p.join('.'));
      for (const n of names.filter((x) => x.length > 0)) {
        assert.equal(glob.matches(n.join('.')), ref(p, n), `${p.join('.')} vs ${n.join('.')}`);
        checked++;
      }
    }
    assert.ok(checked > 10_000);
  });

  it('refuses malformed globs with POLICY_COMPILE', () => {
    for (const bad of ['', 'a*', 'a.b*', 'GitHub.pr', 'a..b', '.a', 'a.', '***', 'a-b', 'a b', 'x'.repeat(129)]) {
      assert.throws(() => compileGlob(bad), (err) => isMandateError(err, 'POLICY_COMPILE'), bad);
    }
  });

  it('anyGlobMatches is true when one of several globs matches', () => {
    const globs = ['github.pr.*', 'gitlab.**'].map(compileGlob);
    assert.equal(anyGlobMatches(globs, 'gitlab.mr.merge'), true);
    assert.equal(anyGlobMatches(globs, 'github.pr.merge'), true);
    assert.equal(anyGlobMatches(globs, 'github.repo.delete'), false);
    assert.equal(anyGlobMatches([], 'github.pr.merge'), false);
  });
});
