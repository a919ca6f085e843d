/**
 * The access token never has to travel in a URL (URLs end up in logs, history and copied
 * links): the stream takes it as a WebSocket subprotocol (`lab.bearer.<base64url>` beside
 * `lab.stream`, which the server selects), the subscriber library sends it that way, and the
 * dashboard's URL code takes a `?token=` out of an address and out of a shared link.
 */
import assert from "node:assert/strict";
import {
  STREAM_SUBPROTOCOL,
  streamProtocols,
  streamUrl,
  tokenFromProtocol,
} from "../client/protocol.ts";
import { Subscriber } from "../client/subscriber.ts";
import { shareableLink, splitToken } from "../client/dashboard/token.ts";
import { startTestLab, waitFor } from "./lab_harness.ts";
import { TcpWsClient } from "./tcp_ws_client.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test("token subprotocol: any token round-trips as an HTTP token-safe string", () => {
  for (const token of ["s3cret", "with space,comma;=", "ünïcødé ✓", "a/b+c==", "x".repeat(300)]) {
    const protocols = streamProtocols(token);
    assert.equal(protocols[0], STREAM_SUBPROTOCOL);
    // RFC 7230 token characters only, or a browser refuses to open the socket.
    assert.match(protocols[1], /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/);
    assert.ok(!protocols[1].includes(token), "the token is encoded");
    assert.equal(tokenFromProtocol(protocols[1]), token);
  }
  assert.deepEqual(streamProtocols(undefined), []);
  assert.equal(tokenFromProtocol("lab.bearer.!!"), undefined);
  assert.equal(tokenFromProtocol("lab.bearer.gA"), undefined, "not UTF-8");
  assert.equal(streamUrl("http://h:1/"), "ws://h:1/api/stream");
});

Deno.test("dashboard URL: the token is taken out of an address and of a shared link", () => {
  assert.deepEqual(splitToken("http://h:1/?token=abc&x=wall&metrics=a,b#top"), {
    token: "abc",
    href: "http://h:1/?x=wall&metrics=a,b#top",
  });
  assert.deepEqual(splitToken("http://h:1/?runs=r1,r2&token=a%20b"), {
    token: "a b",
    href: "http://h:1/?runs=r1,r2",
  });
  assert.deepEqual(splitToken("http://h:1/?token=t"), { token: "t", href: "http://h:1/" });
  const plain = "http://h:1/?x=wall&y=test_error:log";
  assert.deepEqual(splitToken(plain), { token: null, href: plain });
  assert.equal(shareableLink("http://h:1/?zoom=1,2&token=t&token=u"), "http://h:1/?zoom=1,2");
});

Deno.test(
  "with a token: the stream opens with the token subprotocol, not without or with a wrong one",
  opts,
  async () => {
    const token = "tok ✓";
    const lab = await startTestLab({ token });
    try {
      const open = (protocols: string[], url = streamUrl(lab.url)) =>
        new Promise<string>((resolve) => {
          const s = new WebSocket(url, protocols);
          s.onopen = () => {
            const chosen = s.protocol;
            s.close();
            resolve(`open ${chosen}`);
          };
          s.onerror = () => resolve("refused");
        });
      assert.equal(await open(streamProtocols(token)), `open ${STREAM_SUBPROTOCOL}`);
      assert.equal(await open(streamProtocols("wrong")), "refused");
      assert.equal(await open([STREAM_SUBPROTOCOL, "lab.bearer.!!"]), "refused");
      assert.equal(await open([]), "refused");

      // The subscriber library sends it the same way and gets the stream.
      let connected = false;
      const sub = new Subscriber({
        url: lab.url,
        token,
        runs: "*",
        reconnect: false,
        onConnection: (state) => (connected = state === "open"),
      });
      await waitFor(() => connected, "subscriber connected");
      assert.ok((await sub.ping()) >= 0);
      sub.close();
    } finally {
      await lab.close();
    }
  },
);

Deno.test(
  "the token subprotocol is read however the offer is separated; a bare offer still opens",
  opts,
  async () => {
    const token = "t0k";
    const lab = await startTestLab({ token });
    try {
      const [stream, bearer] = streamProtocols(token);
      const handshake = async (offer: string) => {
        try {
          const c = await TcpWsClient.connect(lab.port, "/api/stream", {
            "Sec-WebSocket-Protocol": offer,
          });
          c.close();
          return "open";
        } catch (e) {
          return (e as Error).message;
        }
      };
      for (const offer of [`${stream}, ${bearer}`, `${bearer},${stream}`, `${bearer}`]) {
        assert.equal(await handshake(offer), "open", offer);
      }
      assert.match(await handshake(`${stream}, lab.bearer.d3Jvbmc`), /401/);
    } finally {
      await lab.close();
    }
  },
);
