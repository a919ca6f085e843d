/**
 * A WebSocket client on a bare TCP connection, for backpressure tests: after the handshake it
 * reads only when told to, so a test can stall it (the kernel's socket buffers fill and the
 * server's bufferedAmount grows) and later drain what arrived. Implements just what the tests
 * need of RFC 6455: the client handshake, masked text frames out, unmasked frames in.
 */
import { wirePackr } from "../client/protocol.ts";

export interface InFrame {
  opcode: number;
  payload: Uint8Array;
}

export class TcpWsClient {
  #buf = new Uint8Array(0);
  private constructor(readonly conn: Deno.TcpConn) {}

  /** `headers` are sent as given (e.g. the Origin a browser page would send, another Host). */
  static async connect(
    port: number,
    path = "/api/stream",
    headers: Record<string, string> = {},
  ): Promise<TcpWsClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const all: Record<string, string> = {
      Host: `127.0.0.1:${port}`,
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": key,
      "Sec-WebSocket-Version": "13",
      ...headers,
    };
    const req = `GET ${path} HTTP/1.1\r\n` +
      Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
    await conn.write(new TextEncoder().encode(req));
    const c = new TcpWsClient(conn);
    // Read the 101 response headers; anything after them is frame data, kept in the buffer.
    while (true) {
      const text = new TextDecoder("latin1").decode(c.#buf);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        if (!text.startsWith("HTTP/1.1 101")) {
          conn.close();
          throw new Error(`handshake failed: ${text.slice(0, text.indexOf("\r\n"))}`);
        }
        c.#buf = c.#buf.slice(end + 4);
        return c;
      }
      if (!(await c.#fill())) {
        conn.close();
        throw new Error("connection closed during handshake");
      }
    }
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  /** Sends a JSON text frame. */
  async sendJson(msg: unknown): Promise<void> {
    await this.#send(0x1, new TextEncoder().encode(JSON.stringify(msg)));
  }

  /** Sends one final frame (client frames must be masked). */
  async #send(opcode: number, payload: Uint8Array): Promise<void> {
    const len = payload.length;
    const first = 0x80 | opcode;
    const head = len < 126 ? [first, 0x80 | len] : [first, 0x80 | 126, len >> 8, len & 0xff];
    if (len >= 65536) throw new Error("test client: message too long");
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const frame = new Uint8Array(head.length + 4 + len);
    frame.set(head);
    frame.set(mask, head.length);
    for (let i = 0; i < len; i++) frame[head.length + 4 + i] = payload[i] ^ mask[i & 3];
    await this.conn.write(frame);
  }

  /** The next complete frame, reading from the socket as needed; null at end of stream. */
  async nextFrame(): Promise<InFrame | null> {
    while (true) {
      const f = this.#parse();
      if (f) return f;
      if (!(await this.#fill())) return null;
    }
  }

  #parse(): InFrame | null {
    const b = this.#buf;
    if (b.length < 2) return null;
    const opcode = b[0] & 0x0f;
    let len = b[1] & 0x7f;
    let off = 2;
    if (len === 126) {
      if (b.length < 4) return null;
      len = (b[2] << 8) | b[3];
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return null;
      len = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
      off = 10;
    }
    if (b.length < off + len) return null;
    const payload = b.slice(off, off + len);
    this.#buf = b.slice(off + len);
    return { opcode, payload };
  }

  /**
   * Decoded msgpack messages from binary frames until `stop` says so, or a close frame. Pings
   * read on the way are answered, as any client does: Deno's server pings a socket that has
   * sent nothing for 15 s and closes it (1001) when no pong follows within 15 s more.
   */
  async readMessages(
    stop: (m: Record<string, unknown>) => boolean,
  ): Promise<{ messages: Record<string, unknown>[]; close?: { code: number; reason: string } }> {
    const messages: Record<string, unknown>[] = [];
    while (true) {
      const f = await this.nextFrame();
      if (!f) return { messages };
      if (f.opcode === 0x8) {
        const code = f.payload.length >= 2 ? (f.payload[0] << 8) | f.payload[1] : 1005;
        return { messages, close: { code, reason: new TextDecoder().decode(f.payload.slice(2)) } };
      }
      if (f.opcode === 0x9) await this.#send(0xa, f.payload);
      if (f.opcode !== 0x2) continue;
      const m = wirePackr.unpack(f.payload) as Record<string, unknown>;
      messages.push(m);
      if (stop(m)) return { messages };
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}
