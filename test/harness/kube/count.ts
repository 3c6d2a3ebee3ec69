// `npm run test:integration` reports how many tests ran against the real API server: each test
// file that uses the control plane calls countRealApiserverTests() once at top level (or in its
// describe), and prints one `real-apiserver-tests:` line when it finishes.
import { after, afterEach } from 'node:test';
import { basename } from 'node:path';

/** Counts the tests of the enclosing file or suite; prints `real-apiserver-tests: N (passed P) <file>` at its end. */
export function countRealApiserverTests(label?: string): void {
  let ran = 0;
  let passed = 0;
  afterEach((t) => {
    ran++;
    // node 24 sets `passed` on test contexts; its type declarations only know it on suites.
    if ((t as { passed?: boolean }).passed === true) passed++;
  });
  after((s) => {
    const name = label ?? (s.filePath ? basename(s.filePath) : s.name);
    console.log(`real-apiserver-tests: ${ran} (passed ${passed}) ${name}`);
  });
}
