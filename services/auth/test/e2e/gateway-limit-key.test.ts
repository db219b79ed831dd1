/**
 * The gateway's limit_req key ($tessera_limit_key) is Tessera's own per-IP
 * key (limitKey, src/http/client-address.ts) for the same client: an IPv6
 * client by its /64, an IPv4-mapped one as its IPv4 address, an IPv4 one as
 * is. Through a real Nginx rendered from the shipped template, behind a
 * trusted balancer (127.0.0.1), so that X-Forwarded-For picks the client;
 * a server of the test's own (never in the template) answers with
 * $remote_addr, as Nginx prints it, and the key. gateway-real-ip.test.ts
 * shows the buckets themselves shared and apart.
 */
import { freePort, request } from '@tessera/testkit'
import t from 'tap'
import { limitKey } from '../../src/http/client-address.js'
import { makeCertificate, startGateway, tempDir } from '../helpers/gateway.js'

/**
 * [X-Forwarded-For sent, $remote_addr as Nginx prints it (ngx_inet6_ntop), the key]: each
 * shape of the map's lines, and of what Nginx does not compress.
 */
const TABLE: Array<[string, string, string]> = [
  ['2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
  ['2001:0DB8:0001:0002:0000:0000:0000:0001', '2001:db8:1:2::1', '2001:db8:1:2::/64'],
  ['2001:db8:1:2:0:0:0:0', '2001:db8:1:2::', '2001:db8:1:2::/64'],
  ['2001:db8:1:2:3:0:0:4', '2001:db8:1:2:3::4', '2001:db8:1:2::/64'],
  ['2001:db8:1:0:0:0:0:1', '2001:db8:1::1', '2001:db8:1:0::/64'],
  ['2001:db8:1::', '2001:db8:1::', '2001:db8:1:0::/64'],
  ['2001:db8::1', '2001:db8::1', '2001:db8:0:0::/64'],
  ['2001:db8:0:0:1:2:3:4', '2001:db8::1:2:3:4', '2001:db8:0:0::/64'],
  ['2001::1', '2001::1', '2001:0:0:0::/64'],
  ['2001:0:0:0:1:2:3:4', '2001::1:2:3:4', '2001:0:0:0::/64'],
  ['2001:0:0:a:1:2:3:4', '2001::a:1:2:3:4', '2001:0:0:a::/64'],
  ['0:0:a:b:1:2:3:4', '::a:b:1:2:3:4', '0:0:a:b::/64'],
  ['0:0:0:a:1:2:3:4', '::a:1:2:3:4', '0:0:0:a::/64'],
  ['0:0:0:0:1:2:3:4', '::1:2:3:4', '0:0:0:0::/64'],
  ['::1', '::1', '0:0:0:0::/64'],
  ['::', '::', '0:0:0:0::/64'],
  // A run of one zero group is written out; of two equal runs the first is `::`; a longer one wins.
  ['0:1:0:1:0:1:0:1', '0:1:0:1:0:1:0:1', '0:1:0:1::/64'],
  ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4', '1:0:0:2::/64'],
  ['1:0:0:2:0:0:0:3', '1:0:0:2::3', '1:0:0:2::/64'],
  ['0:0:1:0:0:0:1:1', '0:0:1::1:1', '0:0:1:0::/64'],
  // A dotted tail, only after a `::` at the start: mapped, IPv4-compatible, and seven zero groups (but ::1).
  ['::ffff:198.51.100.9', '::ffff:198.51.100.9', '198.51.100.9'],
  ['::FFFF:c633:6409', '::ffff:198.51.100.9', '198.51.100.9'],
  ['::198.51.100.9', '::198.51.100.9', '0:0:0:0::/64'],
  ['::0.0.1.2', '::0.0.1.2', '0:0:0:0::/64'],
  ['::ffff:0:198.51.100.9', '::ffff:0:c633:6409', '0:0:0:0::/64'],
  ['64:ff9b::198.51.100.9', '64:ff9b::c633:6409', '64:ff9b:0:0::/64'],
  ['198.51.100.9', '198.51.100.9', '198.51.100.9']
]

/** Group values of every width, none with a zero byte where Nginx's IPv4 tail rules look. */
const VALUES = [0x2001, 0xdb8, 0x1, 0xabcd, 0xf00, 0x10, 0xffff, 0x7]

t.test('$tessera_limit_key is Tessera\'s per-IP key on every form Nginx prints', async (t) => {
  const echoPort = await freePort()
  const gateway = await startGateway(t, {
    httpPort: await freePort(),
    httpsPort: await freePort(),
    // Never asked: only the test's own server answers here.
    authAddrs: ['127.0.0.1:9'],
    notesAddr: '127.0.0.1:9',
    tls: makeCertificate(tempDir(t, 'tls')),
    trustedProxies: '127.0.0.1/32',
    testConf: `server {\n  listen 127.0.0.1:${echoPort};\n  access_log off;\n  default_type text/plain;\n  location / {\n    return 200 "$remote_addr $tessera_limit_key";\n  }\n}\n`
  })
  t.notMatch(gateway.configTest.output, /warn|emerg/, 'the map is taken without a warning')
  const seen = async (forwardedFor?: string): Promise<{ printed: string, key: string }> => {
    const reply = await request(`http://127.0.0.1:${echoPort}/`, { headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } })
    if (reply.status !== 200) throw new Error(`the test's server answered ${reply.status}: ${reply.body}`)
    const [printed = '', key = ''] = reply.body.split(' ')
    return { printed, key }
  }

  for (const [sent, printed, key] of TABLE) {
    t.same(await seen(sent), { printed, key }, `${sent}: Nginx prints ${printed}, keyed ${key}`)
    t.equal(limitKey(sent), key, `${sent}: Tessera's key is the same`)
  }
  t.same(await seen(), { printed: '127.0.0.1', key: '127.0.0.1' }, 'no X-Forwarded-For: the peer itself, IPv4 as is')

  // Every place a zero group can be, hence every place and length of the `::` and of the IPv4 tail.
  const differ: string[] = []
  const shapes = new Set<string>()
  for (let zeros = 0; zeros < 256; zeros++) {
    const groups = VALUES.map((value, i) => (zeros >> i) & 1 ? 0 : value)
    const sent = groups.map((group) => group.toString(16).toUpperCase().padStart(4, '0')).join(':')
    const { printed, key } = await seen(sent)
    if (key !== limitKey(sent)) differ.push(`${sent} (printed ${printed}): gateway ${key}, Tessera ${limitKey(sent)}`)
    shapes.add(printed.replace(/[0-9a-f]+/g, 'h'))
  }
  t.same(differ, [], 'all 256 patterns of zero groups: the gateway\'s key is Tessera\'s')
  t.ok(shapes.has('::') && shapes.has('h::') && shapes.has('::h') && shapes.has('h:h:h:h:h:h:h:h') && shapes.has('::h.h.h.h'), `the sweep met the edge shapes (${shapes.size} shapes)`)
})
