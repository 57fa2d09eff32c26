import { describe, expect, it } from 'vitest'
import { clientIp, parseTrustedProxies, rateLimitKey } from '../../lib/client-ip.ts'
import { parseConfig } from '../../lib/config.ts'

const trusted = parseTrustedProxies('127.0.0.0/8, ::1/128, 172.16.0.0/12, 192.168.0.0/16')

const PROXY = '127.0.0.1'
const longJunk = Array.from({ length: 300 }, (_, index) => `10.9.${index % 250}.1`).join(
  ', ',
)
const trustedChain = Array.from({ length: 40 }, () => '192.168.0.1').join(', ')

type Case = {
  name: string
  peer: string
  header: string | string[] | undefined
  expected: string
}

const cases: Case[] = [
  // An untrusted peer is the client, whatever it writes.
  {
    name: 'untrusted peer, no header',
    peer: '203.0.113.9',
    header: undefined,
    expected: '203.0.113.9',
  },
  {
    name: 'untrusted peer claims another client',
    peer: '203.0.113.9',
    header: '198.51.100.1',
    expected: '203.0.113.9',
  },
  {
    name: 'untrusted peer claims to be loopback',
    peer: '203.0.113.9',
    header: '127.0.0.1',
    expected: '203.0.113.9',
  },
  {
    name: 'untrusted peer forges a whole proxy chain',
    peer: '203.0.113.9',
    header: '198.51.100.1, 192.168.0.1, 127.0.0.1',
    expected: '203.0.113.9',
  },
  {
    name: 'untrusted peer sends "unknown"',
    peer: '203.0.113.9',
    header: 'unknown',
    expected: '203.0.113.9',
  },
  {
    name: 'untrusted IPv6 peer with a header',
    peer: '2001:DB8::7',
    header: '198.51.100.1',
    expected: '2001:db8::7',
  },
  {
    name: 'untrusted IPv4-mapped peer',
    peer: '::ffff:203.0.113.9',
    header: '198.51.100.1',
    expected: '203.0.113.9',
  },
  {
    name: 'private address outside the trusted ranges',
    peer: '10.0.0.5',
    header: '198.51.100.1',
    expected: '10.0.0.5',
  },

  // Behind trusted proxies the header is read from the right.
  { name: 'trusted peer, no header', peer: PROXY, header: undefined, expected: PROXY },
  {
    name: 'trusted peer, one client',
    peer: PROXY,
    header: '198.51.100.1',
    expected: '198.51.100.1',
  },
  {
    name: 'client prepends a spoofed address',
    peer: PROXY,
    header: '1.1.1.1, 198.51.100.1',
    expected: '198.51.100.1',
  },
  {
    name: 'client prepends a trusted-looking address',
    peer: PROXY,
    header: '127.0.0.1, 198.51.100.1',
    expected: '198.51.100.1',
  },
  {
    name: 'chain of trusted proxies is skipped',
    peer: PROXY,
    header: '198.51.100.1, 192.168.1.5, 172.16.0.2',
    expected: '198.51.100.1',
  },
  {
    name: 'every entry trusted: the leftmost',
    peer: PROXY,
    header: '192.168.1.1, 172.16.0.2',
    expected: '192.168.1.1',
  },
  {
    name: 'IPv4-mapped trusted peer',
    peer: '::ffff:127.0.0.1',
    header: '198.51.100.2',
    expected: '198.51.100.2',
  },
  {
    name: 'IPv6 loopback peer and IPv6 client',
    peer: '::1',
    header: '2001:db8::5, ::1',
    expected: '2001:db8::5',
  },

  // Parsing of entries.
  {
    name: 'several header lines',
    peer: PROXY,
    header: ['203.0.113.1', '192.168.0.9'],
    expected: '203.0.113.1',
  },
  {
    name: 'lines joined by the gateway',
    peer: PROXY,
    header: '203.0.113.1,192.168.0.9',
    expected: '203.0.113.1',
  },
  {
    name: 'spaces around entries',
    peer: PROXY,
    header: '  198.51.100.7  ,   192.168.0.1 ',
    expected: '198.51.100.7',
  },
  {
    name: 'IPv4 with a port',
    peer: PROXY,
    header: '198.51.100.7:4711',
    expected: '198.51.100.7',
  },
  {
    name: 'bracketed IPv6 with a port',
    peer: PROXY,
    header: '[2001:db8::1]:443',
    expected: '2001:db8::1',
  },
  {
    name: 'bracketed IPv6 without a port',
    peer: PROXY,
    header: '[2001:db8::2]',
    expected: '2001:db8::2',
  },
  {
    name: 'IPv4-mapped client entry',
    peer: PROXY,
    header: '::ffff:198.51.100.8',
    expected: '198.51.100.8',
  },
  {
    name: 'IPv4-mapped trusted entry is skipped',
    peer: PROXY,
    header: '198.51.100.1, ::ffff:192.168.0.3',
    expected: '198.51.100.1',
  },
  { name: 'zone id dropped', peer: PROXY, header: 'fe80::1%eth0', expected: 'fe80::1' },
  {
    name: 'IPv6 written in capitals',
    peer: PROXY,
    header: '2001:DB8:0:0:0:0:0:A',
    expected: '2001:db8::a',
  },

  // A bad entry stops the walk; the last good address wins.
  {
    name: '"unknown" stops the walk',
    peer: PROXY,
    header: 'unknown, 192.168.0.4',
    expected: '192.168.0.4',
  },
  {
    name: 'garbage hides a spoof beyond it',
    peer: PROXY,
    header: '198.51.100.1, garbage, 192.168.0.4',
    expected: '192.168.0.4',
  },
  { name: 'obfuscated identifier', peer: PROXY, header: '_hidden', expected: PROXY },
  {
    name: 'shorthand IPv4 is not guessed',
    peer: PROXY,
    header: '198.51.100.1, 127.1',
    expected: PROXY,
  },
  {
    name: 'hexadecimal IPv4 is not guessed',
    peer: PROXY,
    header: '0x7f.0.0.1',
    expected: PROXY,
  },
  {
    name: 'leading zeros are not guessed',
    peer: PROXY,
    header: '010.0.0.1',
    expected: PROXY,
  },
  {
    name: 'empty entry',
    peer: PROXY,
    header: '198.51.100.1, , 192.168.0.4',
    expected: '192.168.0.4',
  },
  {
    name: 'port out of range',
    peer: PROXY,
    header: '198.51.100.1:1234567',
    expected: PROXY,
  },
  { name: 'unclosed bracket', peer: PROXY, header: '[2001:db8::1', expected: PROXY },
  { name: 'zone id on IPv4', peer: PROXY, header: '198.51.100.1%eth0', expected: PROXY },

  // Caps: only the right end of a long header is read.
  {
    name: 'long header keeps the client at its right end',
    peer: PROXY,
    header: `${longJunk}, 198.51.100.3`,
    expected: '198.51.100.3',
  },
  {
    name: 'a trusted chain past the entry cap ends at the cap',
    peer: PROXY,
    header: `198.51.100.4, ${trustedChain}`,
    expected: '192.168.0.1',
  },

  // A peer the runtime could not name.
  { name: 'missing peer address', peer: '', header: '198.51.100.1', expected: '' },
]

describe('clientIp', () => {
  it.each(cases)('$name', ({ peer, header, expected }) => {
    const ip = clientIp(peer, header, trusted)

    expect(ip).toBe(expected)
  })

  it('believes no header when no proxy is trusted', () => {
    const ip = clientIp('127.0.0.1', '198.51.100.1', [])

    expect(ip).toBe('127.0.0.1')
  })

  it('gives one address however often an untrusted peer rotates its header', () => {
    const seen = new Set(
      Array.from({ length: 50 }, (_, index) =>
        clientIp('203.0.113.50', `198.51.100.${index}, 192.168.0.${index}`, trusted),
      ),
    )

    expect([...seen]).toEqual(['203.0.113.50'])
  })
})

describe('rateLimitKey', () => {
  it('keeps an IPv4 address as it is', () => {
    expect(rateLimitKey('198.51.100.1')).toBe('198.51.100.1')
  })

  it('groups IPv6 addresses of one /64', () => {
    const first = rateLimitKey('2001:db8:1:2:aaaa::1')
    const second = rateLimitKey('2001:db8:1:2:ffff:ffff:ffff:ffff')

    expect(first).toBe('2001:db8:1:2::/64')
    expect(second).toBe(first)
  })

  it('tells IPv6 neighbours in another /64 apart', () => {
    expect(rateLimitKey('2001:db8:1:3::1')).not.toBe(rateLimitKey('2001:db8:1:2::1'))
  })

  it('keys an IPv4-mapped address as its IPv4 address', () => {
    expect(rateLimitKey('::ffff:198.51.100.1')).toBe('198.51.100.1')
  })
})

describe('parseTrustedProxies', () => {
  it('matches IPv4 peers against an IPv4-mapped network', () => {
    const mapped = parseTrustedProxies('::ffff:10.0.0.0/104')

    expect(clientIp('10.1.2.3', '198.51.100.1', mapped)).toBe('198.51.100.1')
    expect(clientIp('11.1.2.3', '198.51.100.1', mapped)).toBe('11.1.2.3')
  })

  it('takes a bare address as a single host', () => {
    const single = parseTrustedProxies('192.0.2.10')

    expect(clientIp('192.0.2.10', '198.51.100.1', single)).toBe('198.51.100.1')
    expect(clientIp('192.0.2.11', '198.51.100.1', single)).toBe('192.0.2.11')
  })

  it.each([
    '10.0.0.0/',
    '10.0.0.0/33',
    '::/129',
    '10.0.0.0/8/8',
    '10.0.0.1:80',
    '127.1/8',
    'proxy.internal',
  ])('refuses %s', (entry) => {
    expect(() => parseTrustedProxies(entry)).toThrow(entry)
  })

  it('stops the configuration with the variable name when an entry is wrong', () => {
    const env = { JWT_SECRET: 'x'.repeat(32), TRUSTED_PROXIES: '10.0.0.0/8, nonsense' }

    expect(() => parseConfig(env)).toThrow(/TRUSTED_PROXIES: "nonsense"/)
  })

  it('trusts nothing when configured with "none"', () => {
    const config = parseConfig({ JWT_SECRET: 'x'.repeat(32), TRUSTED_PROXIES: 'none' })

    expect(config.TRUSTED_PROXIES).toEqual([])
  })
})
