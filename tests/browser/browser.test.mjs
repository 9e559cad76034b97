// The relay's browser pages and the elements against a real Chromium (an
// independent WebRTC implementation):
//   a. whipsink (GStreamer) publishes → relay → the WHEP player page plays it;
//   b. the WHIP publisher page (fake camera) publishes → relay → whepsrc decodes it;
//   c. without the README's mDNS flag the player page says why it cannot connect;
//   d. a WHEP client in the page that POSTs an offer without candidates and
//      trickles them by PATCH connects at once (no gathering wait).
//
// Network rule: test traffic may only go to loopback, so this must run in a
// private network namespace that has nothing but `lo`:
//   unshare -rn sh -c 'ip link set lo up; node --test browser.test.mjs'
// (scripts/test.sh does that). It refuses to run anywhere else.
//
// Chromium gets the flags README.md gives (its `chromium --...` line), plus
// headless/sandbox/test-only ones.
//
// Needs, built beforehand: target/debug/examples/relay and
// target/debug/libgstwhipwhep.so (`cargo build --lib --example relay`).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, "target");
const BUILD = path.join(TARGET, process.env.BROWSER_TEST_PROFILE || "debug");
const OUT = path.join(TARGET, "browser");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PORT = Number(process.env.RELAY_PORT || 8190);
const BASE = `http://127.0.0.1:${PORT}`;
const FRAMES = 30;

fs.mkdirSync(OUT, { recursive: true });
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

// ---- child processes, their output kept in target/browser/<name>.log ----

const children = new Set();

/** Starts a process; `lines` holds its output so far, `waitFor(re)` awaits a line. */
function start(name, cmd, args, env) {
  const logFile = fs.createWriteStream(path.join(OUT, `${name}.log`));
  const childEnv = { ...process.env, ...env };
  delete childEnv.GST_PLUGIN_PATH_1_0;
  delete childEnv.GST_REGISTRY_1_0;
  const child = spawn(cmd, args, {
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = { name, child, lines: [], waiters: [], exited: null };
  const onData = (data) => {
    logFile.write(data);
    for (const line of data.toString().split("\n")) {
      if (!line) continue;
      proc.lines.push(line);
      proc.waiters = proc.waiters.filter((w) => !w(line));
    }
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  child.on("exit", (code, signal) => {
    proc.exited = { code, signal };
    logFile.end();
    children.delete(proc);
    proc.waiters = proc.waiters.filter((w) => !w(null));
  });
  // `since`: only lines after that many (proc.lines.length when asked).
  proc.waitFor = (re, ms, since = 0) =>
    new Promise((resolve, reject) => {
      const found = proc.lines.slice(since).find((l) => re.test(l));
      if (found) return resolve(found);
      const timer = setTimeout(() => {
        reject(new Error(`${name}: no line matching ${re} within ${ms} ms (see ${OUT}/${name}.log)`));
      }, ms);
      proc.waiters.push((line) => {
        if (line === null) {
          clearTimeout(timer);
          reject(new Error(`${name} exited (${JSON.stringify(proc.exited)}) before ${re} (see ${OUT}/${name}.log)`));
          return true;
        }
        if (re.test(line)) {
          clearTimeout(timer);
          resolve(line);
          return true;
        }
        return false;
      });
    });
  children.add(proc);
  return proc;
}

/** SIGINT (gst-launch -e sends EOS and the elements DELETE), SIGKILL after `ms`. */
function stop(proc, ms = 3000) {
  if (!proc || proc.exited) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.child.kill("SIGKILL"), ms);
    proc.child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    proc.child.kill("SIGINT");
  });
}

// Our build of the plugin and a registry of our own (the _1_0 variants
// would take precedence, even empty: they are removed in start()).
const gstEnv = {
  GST_PLUGIN_PATH: BUILD,
  GST_REGISTRY: path.join(OUT, "gst-registry.bin"),
};

// ---- fixtures: relay + Chromium ----

let relay;
let browser;
let context;
let camBrowser;
let camContext;

// The Chromium flags the README gives for the pages against a relay on
// 127.0.0.1: its `chromium --...` line, so that the two cannot drift.
function readmeFlags() {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const line = readme.split("\n").find((l) => /^chromium --/.test(l));
  assert.ok(line, "README.md has no `chromium --...` line");
  return line.split(/\s+/).filter((w) => w.startsWith("--"));
}
const README_FLAGS = readmeFlags();
const MDNS_FLAG = "--disable-features=WebRtcHideLocalIpsWithMdns";

/**
 * Starts Chromium headless with `flags` plus what a test run needs (no
 * sandbox, GPU, network services or first-run UI; an empty profile; DevTools
 * on loopback), and connects playwright to it.
 *
 * Started by hand (not playwright's launch) so that the flags are exactly
 * these: playwright adds a --disable-features of its own, and the last
 * --disable-features on a command line wins.
 */
async function launchChromium(name, flags) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "whipwhep-chromium-"));
  const proc = start(name, CHROMIUM, [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    `--user-data-dir=${profile}`,
    ...flags,
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=760,1000",
    "about:blank",
  ]);
  const line = await proc.waitFor(/DevTools listening on ws:\/\//, 20000);
  const b = await chromium.connectOverCDP(line.slice(line.indexOf("ws://")));
  log(name, b.version(), flags.join(" "));
  return { proc, browser: b, context: b.contexts()[0] };
}

before(async () => {
  const ifaces = Object.keys(os.networkInterfaces());
  const others = ifaces.filter((i) => i !== "lo");
  assert.deepEqual(
    others,
    [],
    `refusing to run with network interfaces other than lo (${others.join(", ")}); ` +
      `run inside: unshare -rn sh -c 'ip link set lo up; ...'`,
  );
  for (const f of [path.join(BUILD, "examples", "relay"), path.join(BUILD, "libgstwhipwhep.so"), CHROMIUM]) {
    assert.ok(fs.existsSync(f), `${f} is missing (cargo build --lib --example relay; install-deps.sh --browser)`);
  }

  relay = start(
    "relay",
    path.join(BUILD, "examples", "relay"),
    ["--address", `127.0.0.1:${PORT}`, "--ice-addresses", "127.0.0.1", "--seconds", "150"],
    { GST_DEBUG: process.env.GST_DEBUG || "whipserversrc:4,whepserversink:4" },
  );
  await relay.waitFor(/relay: publish to/, 15000);
  log("relay up on", BASE);

  // The player runs as a user would start Chromium: the README's flags
  // only. The publisher page needs a camera: a fake one, and a granted
  // permission (which also lets Chromium show its loopback address).
  ({ browser, context } = await launchChromium("chromium", README_FLAGS));
  ({ browser: camBrowser, context: camContext } = await launchChromium("chromium-cam", [
    ...README_FLAGS,
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
  ]));
});

after(async () => {
  for (const b of [browser, camBrowser]) if (b) await b.close().catch(() => {});
  await Promise.all([...children].map((p) => stop(p)));
  log("all stopped");
});

// ---- helpers in the page ----

/** Keeps the last offer and answer a page exchanged in target/browser/<name>.{offer,answer}.sdp. */
function saveSdp(page, name) {
  page.on("response", async (resp) => {
    const req = resp.request();
    if (req.method() !== "POST") return;
    try {
      fs.writeFileSync(path.join(OUT, `${name}.offer.sdp`), req.postData() || "");
      fs.writeFileSync(path.join(OUT, `${name}.answer.sdp`), `HTTP ${resp.status()}\n${await resp.text()}`);
    } catch (e) {
      /* page closed */
    }
  });
}

/** Resolves with the number of frames presented within `ms`, once `want` are seen. */
function countFrames(page, want, ms) {
  return page.evaluate(
    ({ want, ms }) =>
      new Promise((resolve) => {
        const video = document.getElementById("video");
        let frames = 0;
        const done = () => resolve({ frames, width: video.videoWidth, height: video.videoHeight });
        const timer = setTimeout(done, ms);
        const tick = () => {
          frames++;
          if (frames >= want) {
            clearTimeout(timer);
            done();
          } else {
            video.requestVideoFrameCallback(tick);
          }
        };
        video.requestVideoFrameCallback(tick);
      }),
    { want, ms },
  );
}

async function pageState(page) {
  return page.evaluate(() => {
    const t = (id) => document.getElementById(id).textContent;
    return {
      session: t("session"),
      connection: t("connection-state"),
      ice: t("ice-state"),
      resource: t("resource"),
      error: t("error"),
    };
  });
}

/** The selected candidate pair and codecs, from the page's RTCPeerConnection. */
async function selectedPath(page) {
  return page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const stats = await pc.getStats();
    const by = new Map();
    stats.forEach((s) => by.set(s.id, s));
    const out = { codecs: [] };
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = by.get(s.selectedCandidatePairId);
        const l = by.get(pair.localCandidateId);
        const r = by.get(pair.remoteCandidateId);
        out.local = `${l.address}:${l.port}/${l.protocol} ${l.candidateType}`;
        out.remote = `${r.address}:${r.port}/${r.protocol} ${r.candidateType}`;
        out.dtls = `${s.tlsVersion} ${s.dtlsCipher} srtp ${s.srtpCipher}`;
        out.bytes = { sent: s.bytesSent, received: s.bytesReceived };
      }
      if (s.type === "inbound-rtp" || s.type === "outbound-rtp") {
        out[`${s.type} ${s.kind}`] = `${s.packetsReceived ?? s.packetsSent} packets, ${s.framesDecoded ?? s.framesEncoded ?? "-"} frames`;
      }
      if (s.type === "codec") out.codecs.push(s.mimeType);
    });
    return out;
  });
}

// ---- the tests ----

test("GET of an endpoint path serves the pages", async () => {
  const whep = await fetch(`${BASE}/whep/test`);
  assert.equal(whep.status, 200);
  assert.match(whep.headers.get("content-type"), /^text\/html/);
  assert.match(await whep.text(), /<title>WHEP player<\/title>/);
  const whip = await fetch(`${BASE}/whip/cam`);
  assert.equal(whip.status, 200);
  assert.match(await whip.text(), /<title>WHIP publisher<\/title>/);
  // Nobody publishes "test" yet: WHEP's 409 + Retry-After, as problem+json.
  const post = await fetch(`${BASE}/whep/test`, {
    method: "POST",
    headers: { "Content-Type": "application/sdp" },
    body: "v=0\r\n",
  });
  assert.equal(post.status, 409);
  assert.ok(post.headers.get("retry-after"));
  assert.equal((await post.json()).title, "Conflict");
});

test("a. whipsink → relay → WHEP player page in Chromium", async () => {
  const page = await context.newPage();
  page.on("console", (m) => log("player console:", m.text()));
  page.on("pageerror", (e) => log("player page error:", e.message));
  saveSdp(page, "whep-player");
  // The player opens before anything is published: it must show the 409 and retry.
  await page.goto(`${BASE}/whep/test`);
  await page.waitForFunction(() => /409/.test(document.getElementById("error").textContent), null, {
    timeout: 10000,
  });
  log("player shows:", (await pageState(page)).error);

  const publisher = start(
    "whipsink",
    "gst-launch-1.0",
    [
      "-e",
      "videotestsrc", "is-live=true", "pattern=ball",
      "!", "video/x-raw,width=640,height=480,framerate=30/1",
      "!", "vp8enc", "deadline=1",
      "!", "whipsink", `whip-endpoint=${BASE}/whip/test`, "ice-addresses=127.0.0.1",
    ],
    { ...gstEnv, GST_DEBUG: process.env.GST_DEBUG || "whipsink:4" },
  );
  try {
    await relay.waitFor(/relay: test is live/, 15000);
    log("whipsink is publishing");
    await page.waitForFunction(
      () => document.getElementById("connection-state").textContent === "connected",
      null,
      { timeout: 20000 },
    );
    const connectedAt = Date.now();
    const seen = await countFrames(page, FRAMES, 20000);
    log("player:", seen, "after connected:", Date.now() - connectedAt, "ms");
    const state = await pageState(page);
    const route = await selectedPath(page);
    log("player state:", state, route);
    assert.ok(seen.width > 0, `videoWidth ${seen.width}`);
    assert.ok(seen.frames >= FRAMES, `only ${seen.frames} frames presented`);
    assert.equal(state.connection, "connected");
    assert.match(state.ice, /connected|completed/);
    assert.match(route.local, /^127\.0\.0\.1:/);
    assert.match(route.remote, /^127\.0\.0\.1:/);
    // Let the picture fill in before the screenshot.
    await page.waitForTimeout(500);
    await page.screenshot({ path: path.join(OUT, "whep-player.png") });

    // Stop → DELETE → the relay drops the viewer.
    const removed = relay.waitFor(/viewer .* removed: DELETE/, 5000, relay.lines.length);
    await page.click("#stop");
    await removed;
    log("player stopped, viewer removed by DELETE");
  } finally {
    await page.close();
    await stop(publisher);
  }
});

test("b. WHIP publisher page in Chromium → relay → whepsrc", async () => {
  const page = await camContext.newPage();
  page.on("console", (m) => log("publisher console:", m.text()));
  page.on("pageerror", (e) => log("publisher page error:", e.message));
  saveSdp(page, "whip-publisher");
  await page.goto(`${BASE}/whip/cam`);
  await page.waitForFunction(
    () => document.getElementById("connection-state").textContent === "connected",
    null,
    { timeout: 20000 },
  );
  await relay.waitFor(/relay: cam is live/, 10000);
  log("publisher page connected:", await pageState(page), await selectedPath(page));

  const viewer = start(
    "whepsrc",
    "gst-launch-1.0",
    [
      "-e", "-v",
      "whepsrc", `whep-endpoint=${BASE}/whep/cam`, "ice-addresses=127.0.0.1", "media=video",
      "!", "videoconvert",
      "!", "fakesink", "name=frames", "silent=false", "sync=false",
    ],
    { ...gstEnv, GST_DEBUG: process.env.GST_DEBUG || "whepsrc:4" },
  );
  try {
    // One "chain" line per decoded frame reaching the sink.
    const frameLine = /GstFakeSink:frames: last-message = chain/;
    let frames = 0;
    const enough = new Promise((resolve) => {
      const check = (line) => {
        if (line !== null && frameLine.test(line) && ++frames >= FRAMES) {
          resolve();
          return true;
        }
        return line === null;
      };
      for (const l of viewer.lines) if (check(l)) return;
      viewer.waiters.push(check);
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`whepsrc decoded ${frames} frames in 20 s (see ${OUT}/whepsrc.log)`)),
        20000,
      );
    });
    const started = Date.now();
    await Promise.race([enough, timeout]).finally(() => clearTimeout(timer));
    const caps = viewer.lines.find((l) => /videoconvert.*src: caps = video\/x-raw/.test(l)) || "";
    log(`whepsrc decoded ${frames} frames in ${Date.now() - started} ms;`, caps.replace(/^.*caps = /, ""));
    assert.ok(frames >= FRAMES);
    assert.ok(!viewer.exited, `whepsrc exited: ${JSON.stringify(viewer.exited)}`);
    const state = await pageState(page);
    assert.equal(state.connection, "connected");
    assert.match(state.ice, /connected|completed/);
    await page.screenshot({ path: path.join(OUT, "whip-publisher.png") });

    // Stop → DELETE → the relay removes the publisher.
    await stop(viewer);
    const removed = relay.waitFor(/relay: cam ended/, 5000, relay.lines.length);
    await page.click("#stop");
    await removed;
    log("publisher stopped, relay ended cam");
  } finally {
    await stop(viewer);
    await page.close();
  }
});

test("c. without the README's mDNS flag the player says why it does not connect", async () => {
  const flags = README_FLAGS.filter((f) => f !== MDNS_FLAG);
  assert.notDeepEqual(flags, README_FLAGS, `the README's flags lack ${MDNS_FLAG}`);
  const publisher = start(
    "whipsink-hint",
    "gst-launch-1.0",
    [
      "-e",
      "videotestsrc", "is-live=true",
      "!", "video/x-raw,width=320,height=240,framerate=30/1",
      "!", "vp8enc", "deadline=1",
      "!", "whipsink", `whip-endpoint=${BASE}/whip/hint`, "ice-addresses=127.0.0.1",
    ],
    gstEnv,
  );
  let plain;
  try {
    await relay.waitFor(/relay: hint is live/, 15000, 0);
    plain = await launchChromium("chromium-mdns", flags);
    const page = await plain.context.newPage();
    page.on("console", (m) => log("hint console:", m.text()));
    saveSdp(page, "whep-player-mdns");
    const opened = Date.now();
    await page.goto(`${BASE}/whep/hint`);
    // The hint comes 2 s after the answer when the offer has no usable
    // candidate; 10 s is the bound for it to show.
    await page.waitForFunction(() => document.getElementById("hint").textContent !== "", null, {
      timeout: 10000,
    });
    const hint = await page.evaluate(() => document.getElementById("hint").textContent);
    const state = await pageState(page);
    log(`hint after ${Date.now() - opened} ms:`, hint, state);
    assert.match(hint, /WebRtcHideLocalIpsWithMdns/);
    assert.match(hint, /mDNS/);
    assert.notEqual(state.connection, "connected");
    await page.screenshot({ path: path.join(OUT, "whep-player-hint.png") });
    await page.close();
  } finally {
    if (plain) {
      await plain.browser.close().catch(() => {});
      await stop(plain.proc);
    }
    await stop(publisher);
  }
});

test("d. a Chromium client that trickles connects without waiting for its gathering", async () => {
  const publisher = start(
    "whipsink-trickle",
    "gst-launch-1.0",
    [
      "-e",
      "videotestsrc", "is-live=true",
      "!", "video/x-raw,width=320,height=240,framerate=30/1",
      "!", "vp8enc", "deadline=1",
      "!", "whipsink", `whip-endpoint=${BASE}/whip/trickle`, "ice-addresses=127.0.0.1",
    ],
    gstEnv,
  );
  const page = await context.newPage();
  try {
    await relay.waitFor(/relay: trickle is live/, 15000, 0);
    // Any page of the relay's origin: the client below is the test's own.
    await page.goto(`${BASE}/`);
    // A WHEP client as the trickling web clients do it: POST the offer as
    // soon as it is set (no candidate in it yet), then PATCH each candidate
    // as Chromium finds it, with the 201's ETag in If-Match.
    const result = await page.evaluate(async (url) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver("video", { direction: "recvonly" });
      const queued = [];
      const patches = [];
      let session = null;
      const send = async (line) => {
        const body =
          `a=ice-ufrag:${session.ufrag}\r\na=ice-pwd:${session.pwd}\r\n` +
          `m=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:${session.mid}\r\n${line}\r\n`;
        const r = await fetch(session.location, {
          method: "PATCH",
          headers: { "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": session.etag },
          body,
        });
        patches.push(r.status);
      };
      pc.onicecandidate = (e) => {
        const line = e.candidate && e.candidate.candidate ? `a=${e.candidate.candidate}` : "a=end-of-candidates";
        if (e.candidate && !e.candidate.candidate) return;
        if (session) send(line);
        else queued.push(line);
      };
      await pc.setLocalDescription(await pc.createOffer());
      const offer = pc.localDescription.sdp;
      const posted = performance.now();
      const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: offer });
      if (resp.status !== 201) return { error: `POST ${resp.status}: ${await resp.text()}` };
      session = {
        location: new URL(resp.headers.get("Location"), url).href,
        etag: resp.headers.get("ETag"),
        acceptPatch: resp.headers.get("Accept-Patch"),
        ufrag: /a=ice-ufrag:(\S+)/.exec(offer)[1],
        pwd: /a=ice-pwd:(\S+)/.exec(offer)[1],
        mid: pc.getTransceivers()[0].mid,
      };
      await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
      for (const line of queued.splice(0)) await send(line);
      const connectedMs = await new Promise((resolve) => {
        const check = () => pc.connectionState === "connected" && resolve(performance.now() - posted);
        pc.onconnectionstatechange = check;
        check();
        setTimeout(() => resolve(null), 10000);
      });
      let frames = 0;
      for (let i = 0; i < 100 && frames < 30; i++) {
        await new Promise((r) => setTimeout(r, 100));
        (await pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
        });
      }
      await fetch(session.location, { method: "DELETE" });
      pc.close();
      return {
        offerCandidates: (offer.match(/a=candidate/g) || []).length,
        acceptPatch: session.acceptPatch,
        connectedMs,
        patches,
        frames,
      };
    }, `${BASE}/whep/trickle`);
    log("trickling client:", result);
    assert.ok(!result.error, result.error);
    assert.equal(result.offerCandidates, 0, "the offer was to carry no candidate");
    assert.equal(result.acceptPatch, "application/trickle-ice-sdpfrag");
    assert.ok(result.patches.length >= 1 && result.patches.every((s) => s === 204), `PATCHes: ${result.patches}`);
    assert.ok(result.connectedMs !== null && result.connectedMs < 2000, `connected after ${result.connectedMs} ms`);
    assert.ok(result.frames >= 30, `${result.frames} frames decoded`);
  } finally {
    await page.close();
    await stop(publisher);
  }
});
