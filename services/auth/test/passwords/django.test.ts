/**
 * What parseDjangoHash refuses, and why: a hostile or damaged import file
 * must be reported row by row and never cost a login more than the caps.
 */
import t from 'tap'
import { djangoAlgorithmOf, MAX_BCRYPT_COST, parseDjangoHash, verifyDjangoHash } from '../../src/passwords/django.js'
import { hashProblem } from '../../src/users/import.js'

const B64_32 = Buffer.alloc(32, 7).toString('base64')
const B64_64 = Buffer.alloc(64, 7).toString('base64')
const BCRYPT_TAIL = 'a'.repeat(53)

t.test('each malformed or over-cap hash is refused with its reason', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['pbkdf2_sha256$260000$salt', /expected pbkdf2_sha256\$iterations\$salt\$hash/],
    ['pbkdf2_sha256$0$salt$' + B64_32, /not a positive whole number/],
    ['pbkdf2_sha256$260000$$' + B64_32, /salt is empty/],
    ['pbkdf2_sha1$260000$salt$' + B64_32, /not base64 of 20 bytes/],
    ['argon2$argon2d$v=19$m=512,t=2,p=2$c2FsdA$aGFzaA', /expected argon2\$argon2id/],
    ['argon2$argon2id$v=19$m=9999999,t=2,p=1$c2FsdA$aGFzaA', /above the cap/],
    ['argon2$argon2id$v=19$m=512,t=99,p=1$c2FsdA$aGFzaA', /t=99 is above the cap/],
    ['argon2$argon2id$v=19$m=8,t=2,p=8$c2FsdA$aGFzaA', /out of range/],
    ['bcrypt$$2b$12$short', /expected bcrypt\$\$2b\$NN\$/],
    [`bcrypt_sha256$$2b$${MAX_BCRYPT_COST + 1}$${BCRYPT_TAIL}`, /outside 4 to/],
    ['scrypt$16384$salt$8$1', /expected scrypt\$N\$salt\$r\$p\$hash/],
    ['scrypt$16384$salt$8$x$' + B64_64, /positive whole numbers/],
    ['scrypt$1000$salt$8$1$' + B64_64, /power of two/],
    ['scrypt$65536$salt$1$1$' + B64_64, /must be below 2\^\(16·r\), r=1/],
    ['scrypt$1048576$salt$8$1$' + B64_64, /needs more than 32 MiB/],
    ['scrypt$16384$salt$8$99$' + B64_64, /p=99 is above the cap/],
    ['scrypt$16384$$8$1$' + B64_64, /salt is empty/],
    ['scrypt$16384$salt$8$1$' + B64_32, /not base64 of 64 bytes/],
    ['sha1$salt$abc', /unknown hash algorithm "sha1"/]
  ]
  for (const [encoded, reason] of cases) {
    const parsed = parseDjangoHash(encoded)
    t.match(parsed, { ok: false, reason }, encoded)
    t.notOk(await verifyDjangoHash(encoded, 'whatever'), `${encoded}: no verify`)
  }
})

t.test('what is a Django hash, and what the import accepts besides', async (t) => {
  t.equal(djangoAlgorithmOf('argon2x'), undefined, 'no "$": not a Django hash')
  t.equal(djangoAlgorithmOf('$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA'), undefined, 'Tessera\'s own hash')
  t.equal(djangoAlgorithmOf('bcrypt_sha256$$2b$12$x'), 'bcrypt_sha256')
  t.equal(hashProblem('!unusablepasswordmarker'), undefined, 'Django\'s unusable password imports')
  t.equal(hashProblem('$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA'), undefined, 'Tessera\'s argon2id imports')
  // Its own form is held to Django argon2's caps too: one row must not make every login of its name cost minutes.
  t.equal(hashProblem('$argon2id$v=19$m=9999999,t=99,p=999$c2FsdA$aGFzaA'), 'argon2: m=9999999 KiB is above the cap of 262144')
  t.equal(hashProblem('$argon2id$v=19$m=131072,t=60,p=1$c2FsdA$aGFzaA'), 'argon2: t=60 is above the cap of 10')
  t.equal(hashProblem('$argon2id$v=19$m=8,t=2,p=8$c2FsdA$aGFzaA'), 'argon2: parameters out of range')
  t.equal(hashProblem('md5$salt$abc'), 'unknown hash algorithm "md5"')
  t.equal(hashProblem('5f4dcc3b5aa765d61d8327deb882cf99'), 'not a hash of the form algorithm$… (Django\'s unsalted MD5, or another legacy hash, is not imported)', 'an unsalted MD5 is named as a legacy hash, not an algorithm ""')
})
