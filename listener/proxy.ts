import type { Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import { Command, IPv4ProxyAddress, IPv6ProxyAddress, V2ProxyProtocol } from 'proxy-protocol-js';

// PROXY protocol v2 (haproxy proxy-protocol.txt §2.2): 12-byte signature, version/command,
// family/transport, 16-bit length of what follows.
const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const V2_FIXED_LENGTH = 16;
// Addresses plus the TLVs an NLB adds (VPC endpoint id) fit easily; a peer may not make us buffer 64 KiB.
const V2_MAX_BODY = 2048;

function formatIpv6(bytes: readonly number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

/** The v1 line that says the same as a parsed v2 header; smtp-server then reads it as usual. */
function v1LineFor(header: V2ProxyProtocol): string {
  const address = header.proxyAddress;
  if (header.command === Command.PROXY && address instanceof IPv4ProxyAddress) {
    const source = address.sourceAddress.address.join('.');
    const destination = address.destinationAddress.address.join('.');
    return `PROXY TCP4 ${source} ${destination} ${address.sourcePort} ${address.destinationPort}\r\n`;
  }
  if (header.command === Command.PROXY && address instanceof IPv6ProxyAddress) {
    const source = formatIpv6(address.sourceAddress.address);
    const destination = formatIpv6(address.destinationAddress.address);
    return `PROXY TCP6 ${source} ${destination} ${address.sourcePort} ${address.destinationPort}\r\n`;
  }
  // LOCAL (the balancer's own health check) or an unspecified family: keep the socket's address.
  return 'PROXY UNKNOWN\r\n';
}

/**
 * Whether a peer address is one of `ranges` (addresses or CIDR ranges, validated with the config);
 * an IPv4-mapped IPv6 peer matches its IPv4 range.
 */
export function trustedPeers(ranges: readonly string[]): (address: string | undefined) => boolean {
  const parsed = ranges.map((range): [ipaddr.IPv4 | ipaddr.IPv6, number] => {
    if (range.includes('/')) return ipaddr.parseCIDR(range);
    const ip = ipaddr.parse(range);
    return [ip, ip.kind() === 'ipv4' ? 32 : 128];
  });
  return (address) => {
    if (!address || !ipaddr.isValid(address)) return false;
    const ip = ipaddr.process(address);
    return parsed.some((range) => range[0].kind() === ip.kind() && ip.match(range));
  };
}

function isV2Prefix(data: Buffer): boolean {
  const length = Math.min(data.length, V2_SIGNATURE.length);
  return data.subarray(0, length).equals(V2_SIGNATURE.subarray(0, length));
}

/**
 * Reads a PROXY v2 header off the start of a connection and puts back whatever followed it.
 * Resolves the header; null when the connection starts otherwise (everything read is put back);
 * false when the socket closed or sent a broken v2 header (the socket is then destroyed). The
 * socket is left paused.
 */
export function readProxyV2Header(
  socket: Socket,
  timeoutMs: number,
): Promise<V2ProxyProtocol | null | false> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    const finish = (header: V2ProxyProtocol | null | false, replay?: Buffer) => {
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.removeListener('error', onClose);
      socket.setTimeout(0, onClose);
      if (header === false) {
        socket.on('error', () => {});
        socket.destroy();
        return resolve(false);
      }
      socket.pause();
      if (replay && replay.length > 0) socket.unshift(replay);
      resolve(header);
    };
    const onClose = () => finish(false);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!isV2Prefix(buffered)) return finish(null, buffered);
      if (buffered.length < V2_FIXED_LENGTH) return;
      const bodyLength = buffered.readUInt16BE(14);
      if (bodyLength > V2_MAX_BODY) return finish(false);
      const total = V2_FIXED_LENGTH + bodyLength;
      if (buffered.length < total) return;
      let header: V2ProxyProtocol;
      try {
        header = V2ProxyProtocol.parse(buffered.subarray(0, total));
      } catch {
        return finish(false);
      }
      finish(header, buffered.subarray(total));
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.setTimeout(timeoutMs, onClose);
  });
}

/**
 * Makes a connection that starts with a PROXY v2 header readable by smtp-server, which parses only
 * v1: reads the binary header and puts back an equivalent v1 line (and whatever followed). Only v2
 * is taken, as an NLB sends it: a connection that starts otherwise (a v1 line included) is refused,
 * so the only v1 line smtp-server ever reads is ours. Call it only for trusted peers. Resolves false
 * if the socket closed, sent no v2 header or a broken one (the socket is then destroyed).
 */
export async function translateProxyV2(socket: Socket, timeoutMs: number): Promise<boolean> {
  const header = await readProxyV2Header(socket, timeoutMs);
  if (header === null) {
    socket.on('error', () => {});
    socket.destroy();
  }
  if (!header) return false;
  socket.unshift(Buffer.from(v1LineFor(header), 'latin1'));
  return true;
}
