// `npm run test:integration`: the integration suite alone, one file at a time (each starts its own
// control plane), passing node's test output through and closing with the total of tests that ran
// against a real kube-apiserver (each such file prints `real-apiserver-tests: N (passed P) FILE`).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const child = spawn(process.execPath, ['--test', '--test-concurrency=1', 'test/integration/**/*.test.ts'], { stdio: ['ignore', 'pipe', 'inherit'] });
let ran = 0;
let passed = 0;
const files: string[] = [];
createInterface({ input: child.stdout }).on('line', (line) => {
  process.stdout.write(line + '\n');
  const m = /real-apiserver-tests: (\d+) \(passed (\d+)\) (\S+)/.exec(line);
  if (m) {
    ran += Number(m[1]);
    passed += Number(m[2]);
    files.push(m[3]!);
  }
});
child.on('close', (code) => {
  process.stdout.write(`\nreal-apiserver-tests total: ${ran} ran, ${passed} passed, in ${files.length} files (${files.join(', ')})\n`);
  process.exitCode = code ?? 1;
});
