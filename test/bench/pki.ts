// A throwaway PKI for the bare baseline server and its tests, made with the openssl CLI: one
// ECDSA P-256 root, a server certificate for localhost / 127.0.0.1 and a client certificate with
// one SPIFFE URI SAN: the key type and certificate shape Mandate's CA issues, so the TLS work per
// connection is comparable. Mandate's own certificates come from `mandate cert issue`, never here.
// (openssl rather than @peculiar/x509: the installed x509 build needs a Reflect metadata polyfill
// that is not among the dependencies.)
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TestPkiFiles {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly clientSpiffeId: string;
}

export interface TestPkiPem {
  readonly caPem: string;
  readonly serverCertPem: string;
  readonly serverKeyPem: string;
  readonly clientCertPem: string;
  readonly clientKeyPem: string;
}

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', [...args], { cwd, timeout: 30_000, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (!err) {
        resolve();
        return;
      }
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(new Error(missing ? 'openssl is not on PATH; the bench PKI needs it' : `openssl ${args[0] ?? ''} failed: ${stderr.trim() || err.message}`, { cause: err }));
    });
  });
}

const newKey = (cwd: string, out: string): Promise<void> => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out], cwd);
const serial = (): string => `0x${randomBytes(16).toString('hex').replace(/^[89a-f]/, '1')}`;

async function issueLeaf(cwd: string, name: string, cn: string, ext: string, days: number): Promise<void> {
  await newKey(cwd, `${name}-key.pem`);
  await openssl(['req', '-new', '-key', `${name}-key.pem`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`], cwd);
  await writeFile(join(cwd, `${name}.ext`), ext);
  await openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', serial(), '-days', String(days), '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`],
    cwd,
  );
  await rm(join(cwd, `${name}.csr`), { force: true });
  await rm(join(cwd, `${name}.ext`), { force: true });
}

/** Creates ca.pem, server.pem / server-key.pem and client.pem / client-key.pem in `dir`. */
export async function createTestPki(dir: string, options: { trustDomain?: string; clientPath?: string; days?: number } = {}): Promise<TestPkiFiles> {
  const clientSpiffeId = `spiffe://${options.trustDomain ?? 'cluster.local'}${options.clientPath ?? '/ns/bench/agent/bench-client'}`;
  const days = options.days ?? 1;
  await mkdir(dir, { recursive: true });
  await newKey(dir, 'ca-key.pem');
  await openssl(
    [
      'req', '-x509', '-new', '-key', 'ca-key.pem', '-sha256', '-days', String(days), '-subj', '/CN=mandate bench test CA', '-set_serial', serial(),
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash',
      '-out', 'ca.pem',
    ],
    dir,
  );
  const leafExt = (usage: string, san: string): string =>
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyAgreement',
      `extendedKeyUsage=${usage}`,
      `subjectAltName=${san}`,
      'authorityKeyIdentifier=keyid',
      '',
    ].join('\n');
  await issueLeaf(dir, 'server', 'localhost', leafExt('serverAuth', 'DNS:localhost,IP:127.0.0.1'), days);
  await issueLeaf(dir, 'client', 'bench-client', leafExt('clientAuth', `URI:${clientSpiffeId}`), days);
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server-key.pem'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client-key.pem'),
    clientSpiffeId,
  };
}

export async function readTestPki(files: TestPkiFiles): Promise<TestPkiPem> {
  const [caPem, serverCertPem, serverKeyPem, clientCertPem, clientKeyPem] = await Promise.all(
    [files.ca, files.serverCert, files.serverKey, files.clientCert, files.clientKey].map((f) => readFile(f, 'utf8')),
  );
  return { caPem: caPem!, serverCertPem: serverCertPem!, serverKeyPem: serverKeyPem!, clientCertPem: clientCertPem!, clientKeyPem: clientKeyPem! };
}
