// Branchline console: checks an audit entry's inclusion proof and the signed checkpoint in
// the browser, with Web Crypto only (SHA-256, Ed25519), each step shown as it passes or fails.
// Formats: RFC 9162 (leaf prefix 0x00, node prefix 0x01), C2SP tlog-checkpoint and signed
// note, verifier key "<name>+<hex key id>+<base64(0x01 || public key)>".
"use strict";

(function () {
  const enc = new TextEncoder();

  function hexToBytes(hex) {
    if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new Error("not hex");
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }
  function bytesToHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function b64ToBytes(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  function concat(...parts) {
    const size = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(size);
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // RFC 9162 section 2.1.3.2: the root an inclusion path leads to (null if malformed).
  async function rootFromInclusion(index, size, leaf, path) {
    if (index >= size) return null;
    let fn = BigInt(index), sn = BigInt(size) - 1n, r = leaf;
    for (const p of path) {
      if (sn === 0n) return null;
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), p, r));
        if ((fn & 1n) === 0n) {
          while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
        }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, p));
      }
      fn >>= 1n; sn >>= 1n;
    }
    return sn === 0n ? r : null;
  }

  function parseNote(note) {
    const split = note.indexOf("\n\n");
    if (split < 0) throw new Error("no blank line");
    const text = note.slice(0, split + 1);
    const body = text.split("\n");
    const signatures = note.slice(split + 2).split("\n").filter((l) => l.length > 0).map((line) => {
      if (!line.startsWith("\u2014 ")) throw new Error("bad signature line");
      const parts = line.slice(2).split(" ");
      return { name: parts[0], blob: b64ToBytes(parts[1]) };
    });
    return { text, origin: body[0], size: body[1], root: body[2], signatures };
  }

  async function verify(panel) {
    const proof = JSON.parse(panel.dataset.proof);
    const steps = panel.querySelector("#verify-steps");
    const result = panel.querySelector("#verify-result");
    steps.replaceChildren();
    result.textContent = "";
    const show = (key, ok, detail) => {
      const li = document.createElement("li");
      li.dataset.step = key;
      li.dataset.ok = ok ? "true" : "false";
      const mark = document.createElement("span");
      mark.className = ok ? "step-ok" : "step-bad";
      mark.textContent = (ok ? "\u2713 " : "\u2717 ") + (ok ? panel.dataset.lPass : panel.dataset.lFail);
      li.append(panel.dataset["l" + key[0].toUpperCase() + key.slice(1)] + " \u2014 ", mark);
      if (detail) {
        const code = document.createElement("code");
        code.className = "hash";
        code.textContent = " " + detail;
        li.append(code);
      }
      steps.append(li);
      return ok;
    };
    const finish = (ok) => {
      result.textContent = ok ? panel.dataset.lOk : panel.dataset.lBad;
      result.className = ok ? "notice" : "error";
      panel.dataset.verified = ok ? "true" : "false";
      return ok;
    };
    if (!window.crypto || !crypto.subtle) { result.textContent = panel.dataset.lNocrypto; return finish(false); }

    const leaf = await sha256(concat(Uint8Array.of(0), hexToBytes(proof.entry_hash)));
    if (!show("leaf", equal(leaf, hexToBytes(proof.leaf_hash)), bytesToHex(leaf))) return finish(false);

    const path = proof.inclusion_path.map(hexToBytes);
    const root = await rootFromInclusion(proof.leaf_index, proof.tree_size, leaf, path);
    if (!show("root", root !== null, root ? bytesToHex(root) : "")) return finish(false);

    const note = parseNote(proof.checkpoint);
    const noteRoot = b64ToBytes(note.root);
    const sameTree = note.size === String(proof.tree_size) && equal(noteRoot, root);
    if (!show("note", sameTree, note.origin + " / " + note.size)) return finish(false);

    // "<name>+<key id>+<base64>": the name has no "+", the base64 may.
    const vk = proof.verifier_key;
    const first = vk.indexOf("+"), second = vk.indexOf("+", first + 1);
    const keyName = vk.slice(0, first), keyIdHex = vk.slice(first + 1, second);
    const keyB64 = vk.slice(second + 1);
    const keyBytes = b64ToBytes(keyB64);
    const publicKey = keyBytes.slice(1);
    const keyId = (await sha256(concat(enc.encode(keyName), Uint8Array.of(0x0a), keyBytes))).slice(0, 4);
    const signature = note.signatures.find((s) => s.name === keyName && equal(s.blob.slice(0, 4), keyId));
    const keyOk = keyBytes[0] === 1 && bytesToHex(keyId) === keyIdHex.toLowerCase() && signature !== undefined;
    if (!show("key", keyOk, keyName + "+" + keyIdHex)) return finish(false);

    let valid = false;
    try {
      const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
      valid = await crypto.subtle.verify({ name: "Ed25519" }, key, signature.blob.slice(4), enc.encode(note.text));
    } catch (error) {
      result.textContent = panel.dataset.lNocrypto;
      show("sig", false, String(error));
      return finish(false);
    }
    show("sig", valid, "");
    return finish(valid);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const panel = document.getElementById("verifier");
    if (!panel) return;
    const button = panel.querySelector("#verify-button");
    button.disabled = false; // enabled once this script can answer the click
    button.addEventListener("click", () => {
      verify(panel).catch((error) => {
        panel.querySelector("#verify-result").textContent = panel.dataset.lBad + " " + error;
        panel.dataset.verified = "false";
      });
    });
  });
})();
