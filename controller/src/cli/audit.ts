// `mandate audit verify DIR [--key PEM]`: exit 0 when the chain and checkpoints hold, 4 with the
// first problem (segment, line, record) when anything was edited, removed, reordered or cut.
import { readFile } from 'node:fs/promises';
import { MandateError } from '../errors.ts';
import { verifyAuditDir } from '../audit/verify.ts';
import { parseFlags } from './args.ts';

const help = `usage: mandate audit verify DIR [--key PUBLIC_KEY_PEM] [--json]

Checks every record's hash chain, sequence and the signed segment seals and head checkpoint.
Without --key the public key stored in DIR is used: that proves integrity against edits of the
records, but someone able to rewrite the whole folder could re-sign it; pin the key to rule that out.`;

export async function auditCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'verify') {
    if (sub === undefined || sub === '--help' || sub === '-h') {
      process.stdout.write(help + '\n');
      return sub === undefined ? 2 : 0;
    }
    throw new MandateError('FLAG_INVALID', `mandate audit: unknown subcommand "${sub}" (expected verify)`);
  }
  const { values, positionals } = parseFlags('audit verify', rest, { key: { type: 'string' }, json: { type: 'boolean' } }, true);
  if (values.help) {
    process.stdout.write(help + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new MandateError('FLAG_INVALID', 'mandate audit verify: give exactly one audit folder');
  const dir = positionals[0]!;
  const publicKeyPem = values.key ? await readFile(values.key, 'utf8') : undefined;
  const report = await verifyAuditDir(dir, publicKeyPem ? { publicKeyPem } : {});
  if (values.json) process.stdout.write(JSON.stringify(report) + '\n');
  else if (report.ok) process.stdout.write(`OK: ${report.records} records in ${report.segments} segments verified (${dir})\n`);
  else {
    const p = report.problem!;
    const where = [p.segment, p.line !== undefined ? `line ${p.line}` : '', p.seq !== undefined ? `record ${p.seq}` : ''].filter(Boolean).join(', ');
    process.stdout.write(`TAMPERED (${p.kind}): ${where}: ${p.message}\n`);
  }
  return report.ok ? 0 : 4;
}
