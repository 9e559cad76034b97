// Why a session does not connect, said on the page instead of leaving it at
// "connecting": the browser offered no address the server can use (none, or
// only mDNS names), the answer has none, or ICE found no path.
const FLAGS = "--allow-loopback-in-peer-connection --disable-features=WebRtcHideLocalIpsWithMdns";
let hintTimer = null;
function showHint(text) { $("hint").textContent = text; }
function clearHint() { clearTimeout(hintTimer); showHint(""); }
function candidateAddresses(sdp) {
  return (sdp || "").split(/\r?\n/).filter((l) => l.startsWith("a=candidate:"))
    .map((l) => l.split(" ")[4] || "");
}
function whyNotConnected(peer, offerSdp, answerSdp) {
  const ours = candidateAddresses(offerSdp);
  const mdns = ours.filter((a) => /\.local$/i.test(a));
  const theirs = [...new Set(candidateAddresses(answerSdp))];
  if (theirs.length === 0) {
    return "the server's answer carries no ICE candidate (set its ice-addresses to an address this browser can reach).";
  }
  const at = " The server is at " + theirs.join(", ") + ".";
  if (ours.length === 0) {
    return "your browser offered no ICE candidate: it has no address to reach the server from." + at +
      " Chromium gathers no loopback candidate for a page without camera permission, and hides the addresses" +
      " it has behind mDNS names: start it with " + FLAGS + ", or serve on an address of your LAN.";
  }
  if (mdns.length === ours.length) {
    return "your browser hides its addresses behind mDNS names (" + mdns[0] + "), which the server cannot use;" +
      " it can only answer the checks the browser sends it." + at + " Start Chromium with " + FLAGS +
      ", or make sure this browser can reach that address.";
  }
  return "ICE is " + peer.iceConnectionState + ": no path between " + [...new Set(ours)].join(", ") +
    " and the server." + at + " Is that address reachable from this browser (firewall, the server's ice-addresses)?";
}
// Armed once the answer is applied: a session connects within a second on a
// LAN, so a few seconds without is worth a word.
function armHint(peer, offerSdp, answerSdp) {
  clearTimeout(hintTimer);
  const usable = candidateAddresses(offerSdp).filter((a) => !/\.local$/i.test(a));
  const ms = usable.length && candidateAddresses(answerSdp).length ? 5000 : 2000;
  hintTimer = setTimeout(() => {
    if (peer !== pc || peer.connectionState === "connected") return;
    showHint("Not connected after " + ms / 1000 + " s: " + whyNotConnected(peer, offerSdp, answerSdp));
  }, ms);
}

