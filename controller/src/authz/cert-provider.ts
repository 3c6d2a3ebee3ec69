// Serves the authz listener's TLS material from memory so that the server certificate and the
// trust bundle can be replaced while the server runs (rotation without restart, no dropped
// connections: existing sessions keep their handshake, new ones get the new certificate).
//
// One object plays both roles grpc-js asks for (CA bundle and identity). That is deliberate:
// grpc-js 1.14's createCertificateProviderServerCredentials(ca, identity, ...) hands its two
// arguments to the credentials constructor in the opposite order, so passing the same provider
// twice is the only way not to depend on that detail.
//
// The first update is delivered on a microtask, not synchronously: grpc-js subscribes to the
// provider before it registers the server's own watcher, so a synchronous first answer reaches
// nobody and the server drops every connection as "credentials not loaded".
import type { experimental } from '@grpc/grpc-js';

type Provider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdListener = experimental.IdentityCertificateUpdateListener;

export interface TlsMaterial {
  /** PEM trust bundle for client certificates (Mandate's CA roots). */
  readonly caPem: string;
  /** PEM server certificate chain. */
  readonly certPem: string;
  readonly keyPem: string;
}

export class MemoryCertificateProvider implements Provider {
  #material: TlsMaterial;
  readonly #ca = new Set<CaListener>();
  readonly #id = new Set<IdListener>();

  constructor(material: TlsMaterial) {
    this.#material = material;
  }

  get material(): TlsMaterial {
    return this.#material;
  }

  update(material: TlsMaterial): void {
    this.#material = material;
    for (const l of this.#ca) l(this.#caUpdate());
    for (const l of this.#id) l(this.#idUpdate());
  }

  #caUpdate() {
    return { caCertificate: Buffer.from(this.#material.caPem) };
  }

  #idUpdate() {
    return { certificate: Buffer.from(this.#material.certPem), privateKey: Buffer.from(this.#material.keyPem) };
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#ca.add(listener);
    queueMicrotask(() => {
      if (this.#ca.has(listener)) listener(this.#caUpdate());
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#ca.delete(listener);
  }

  addIdentityCertificateListener(listener: IdListener): void {
    this.#id.add(listener);
    queueMicrotask(() => {
      if (this.#id.has(listener)) listener(this.#idUpdate());
    });
  }

  removeIdentityCertificateListener(listener: IdListener): void {
    this.#id.delete(listener);
  }
}
