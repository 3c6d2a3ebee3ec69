// Splits a configured "host:port" (IPv6 in brackets) for node's listen(); port 0 picks a free one.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(i + 1)) };
}

export function listenHostPort(server: Server, listen: string): Promise<number> {
  const { host, port } = splitHostPort(listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
