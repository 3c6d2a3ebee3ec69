// One-shot load of the manifests folder for the offline commands (check, cert issue): the same
// validation and compilation `serve` publishes, so what they answer is what the server would.
import { compileSnapshot, type Compiled } from '../authz/compiled.ts';
import type { Config } from '../config.ts';
import { MandateError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { formatProblem } from '../store/problems.ts';
import { FileStore, type Published } from '../store/files.ts';

export async function loadCompiled(config: Config, log: Logger): Promise<Published<Compiled>> {
  const store = new FileStore<Compiled>({
    dir: config.standalone.manifests,
    watch: false,
    log,
    compile: (s) => compileSnapshot(s, config.trustDomain),
  });
  const result = await store.load();
  const current = store.current();
  if (!result.ok || !current) {
    const list = result.problems.map((p) => `  ${formatProblem(p)}`).join('\n');
    throw new MandateError('MANIFEST_INVALID', `the manifests in ${config.standalone.manifests} do not load:\n${list}`);
  }
  return current;
}
