// The API server's refusal of a request, for tests that expect one (RBAC 403, schema 422, ...).
import assert from 'node:assert/strict';
import { ApiException } from '@kubernetes/client-node';

export async function apiError(call: () => Promise<unknown>): Promise<ApiException<unknown>> {
  try {
    await call();
  } catch (err) {
    if (err instanceof ApiException) return err as ApiException<unknown>;
    throw err;
  }
  assert.fail('expected the API server to refuse the request');
}
