import ipaddr from 'ipaddr.js'

type Address = ipaddr.IPv4 | ipaddr.IPv6

/** Parsed `TRUSTED_PROXIES`: networks as [address, prefix length]. */
export type TrustedProxies = readonly (readonly [Address, number])[]

// Proxies append one entry each; a real chain is a handful long. Anything beyond these
// bounds was written by a client, and only the right end of the header can be trusted.
const MAX_FORWARDED_LENGTH = 1024
const MAX_FORWARDED_ENTRIES = 16

const IPV4_WITH_PORT = /^[0-9.]+:[0-9]{1,5}$/
const PORT_SUFFIX = /^:[0-9]{1,5}$/

function unmapped(address: Address): Address {
  return address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()
    ? (address as ipaddr.IPv6).toIPv4Address()
    : address
}

function withoutPortAndBrackets(entry: string): string | undefined {
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']')
    if (close === -1) return undefined
    const rest = entry.slice(close + 1)
    if (rest !== '' && !PORT_SUFFIX.test(rest)) return undefined
    return entry.slice(1, close)
  }
  if (IPV4_WITH_PORT.test(entry)) return entry.slice(0, entry.lastIndexOf(':'))
  return entry
}

/**
 * One address as written in a header or by the runtime, or `undefined` when it is not
 * one. IPv4 must be four decimal parts: `127.1` or `0x7f.0.0.1` are refused, not guessed.
 */
export function parseAddress(text: string): Address | undefined {
  let candidate = withoutPortAndBrackets(text.trim())
  if (!candidate) return undefined

  const zone = candidate.indexOf('%')
  if (zone !== -1 && candidate.includes(':')) candidate = candidate.slice(0, zone)

  if (ipaddr.IPv4.isValidFourPartDecimal(candidate)) return ipaddr.IPv4.parse(candidate)
  if (candidate.includes(':') && ipaddr.IPv6.isValid(candidate)) {
    return unmapped(ipaddr.IPv6.parse(candidate))
  }
  return undefined
}

function format(address: Address): string {
  return address.kind() === 'ipv4'
    ? address.toString()
    : (address as ipaddr.IPv6).toRFC5952String()
}

function parseNetwork(entry: string): readonly [Address, number] {
  const [text = '', bitsText, ...extra] = entry.split('/')
  const invalid = new Error(`"${entry}" is not an IP address or CIDR network`)
  if (extra.length > 0 || (bitsText !== undefined && !/^[0-9]{1,3}$/.test(bitsText))) {
    throw invalid
  }

  let address: Address
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) address = ipaddr.IPv4.parse(text)
  else if (text.includes(':') && ipaddr.IPv6.isValid(text))
    address = ipaddr.IPv6.parse(text)
  else throw invalid
  const maxBits = address.kind() === 'ipv4' ? 32 : 128
  const bits = bitsText === undefined ? maxBits : Number(bitsText)
  if (bits > maxBits) throw invalid

  // Peers arrive unmapped, so an IPv4-mapped network is matched as the IPv4 one.
  const mapped =
    address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()
  return mapped && bits >= 96 ? [unmapped(address), bits - 96] : [address, bits]
}

/**
 * Parses a comma-separated list of addresses and CIDR networks; throws naming the first
 * entry that is neither.
 */
export function parseTrustedProxies(text: string): TrustedProxies {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
    .map(parseNetwork)
}

function isTrusted(address: Address, trusted: TrustedProxies): boolean {
  return trusted.some(
    ([network, bits]) =>
      network.kind() === address.kind() && address.match(network, bits),
  )
}

function forwardedEntries(header: string | readonly string[] | undefined): string[] {
  if (header === undefined) return []
  let joined = typeof header === 'string' ? header : header.join(',')

  if (joined.length > MAX_FORWARDED_LENGTH) {
    joined = joined.slice(-MAX_FORWARDED_LENGTH)
    // The cut went through an entry, or just before one; either way drop that first piece.
    joined = joined.slice(joined.indexOf(',') + 1)
  }
  return joined.split(',').slice(-MAX_FORWARDED_ENTRIES)
}

/**
 * The client's address. A peer outside the trusted proxies is the client, whatever its
 * headers say. Behind trusted proxies, `X-Forwarded-For` is read from the right, where
 * each proxy appended the address it saw: the first untrusted entry is the client. The
 * left part is whatever the client wrote, so it only counts when every proxy is trusted
 * (then the leftmost entry wins), and an entry that is not an address stops the walk at
 * the last good one.
 */
export function clientIp(
  sourceIp: string,
  xForwardedFor: string | readonly string[] | undefined,
  trusted: TrustedProxies,
): string {
  const peer = parseAddress(sourceIp)
  if (!peer) return sourceIp.trim()
  if (!isTrusted(peer, trusted)) return format(peer)

  let client = peer
  const entries = forwardedEntries(xForwardedFor)
  for (let index = entries.length - 1; index >= 0; index -= 1) {
    const address = parseAddress(entries[index] ?? '')
    if (!address) break
    client = address
    if (!isTrusted(address, trusted)) break
  }
  return format(client)
}

/**
 * The rate-limit key of a client address: IPv4 as is, IPv6 by its /64, the smallest
 * block a single subscriber is given, so one host cannot rotate through its own block.
 */
export function rateLimitKey(ip: string): string {
  const address = parseAddress(ip)
  if (!address) return ip
  if (address.kind() === 'ipv4') return address.toString()

  const parts = (address as ipaddr.IPv6).parts.map((part, index) =>
    index < 4 ? part : 0,
  )
  return `${new ipaddr.IPv6(parts).toRFC5952String()}/64`
}
