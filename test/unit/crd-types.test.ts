// crds/generated/types.ts is derived from crds/*.yaml; a CRD edit without `npm run gen:types`
// must fail here rather than let the code and the schemas disagree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { generatedPath, renderTypes } from '../../scripts/gen-types.ts';

test('crds/generated/types.ts is what scripts/gen-types.ts renders from the CRDs', async () => {
  const [fresh, checkedIn] = await Promise.all([renderTypes(), readFile(generatedPath, 'utf8')]);
  assert.ok(fresh.includes('export interface AgentIdentity'), 'the renderer produced the AgentIdentity type');
  assert.equal(checkedIn, fresh, 'crds/generated/types.ts is out of date: run npm run gen:types');
});
