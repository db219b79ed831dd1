/**
 * Certificate revocation lists made at test time by `openssl ca`, for
 * DATABASE_URL's sslcrl and sslcrldir (db/tls.ts): nothing of a CA's is
 * committed.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * A PEM CRL signed by the CA `caCert` (its key `caKey`), listing the
 * certificates in `revoked` (none: a CRL that revokes nothing), written to
 * `dir/name.pem`; `openssl ca`'s bookkeeping goes in a directory beside it.
 * Issued now, or at `issuedAt` (its lastUpdate), and current for two days from now.
 */
export function makeCrl (dir: string, name: string, ca: { cert: string, key: string }, revoked: readonly string[] = [], issuedAt?: Date): string {
  const work = join(dir, `${name}.ca`)
  mkdirSync(work)
  writeFileSync(join(work, 'index.txt'), '')
  writeFileSync(join(work, 'crlnumber'), '01\n')
  const config = join(work, 'ca.cnf')
  writeFileSync(config, `[ca]\ndefault_ca = test\n[test]\ndatabase = ${join(work, 'index.txt')}\ncrlnumber = ${join(work, 'crlnumber')}\ndefault_md = sha256\ndefault_crl_days = 2\n`)
  const openssl = (...args: string[]): void => { execFileSync('openssl', ['ca', '-config', config, '-keyfile', ca.key, '-cert', ca.cert, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }) }
  for (const certificate of revoked) openssl('-revoke', certificate)
  const crl = join(dir, `${name}.pem`)
  const lastUpdate = issuedAt === undefined ? [] : ['-crl_lastupdate', `${issuedAt.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`]
  openssl('-gencrl', ...lastUpdate, '-out', crl)
  return crl
}

/** The name OpenSSL looks `crl` up by in an sslcrldir: its issuer's hash and `.r0` (what `openssl rehash` names it). */
export function hashedCrlName (crl: string): string {
  return `${execFileSync('openssl', ['crl', '-hash', '-noout', '-in', crl], { encoding: 'utf8' }).trim()}.r0`
}
