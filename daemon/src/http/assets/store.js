// The token app's store, shared by the app and the setup success page's import: each token
// in IndexedDB with its secret as a non-extractable WebCrypto HMAC key. The secret's bytes
// are never written anywhere else.
'use strict';

const DB_NAME = 'otpd-token-app';
const STORE = 'tokens';

function openDb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB_NAME, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE, { keyPath: 'id' });
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function tx(mode, f) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const req = f(t.objectStore(STORE));
    t.oncomplete = () => resolve(req && req.result);
    t.onerror = () => reject(t.error);
  });
}

const allTokens = () => tx('readonly', (s) => s.getAll());
const putToken = (t) => tx('readwrite', (s) => s.put(t));
const deleteToken = (id) => tx('readwrite', (s) => s.delete(id));

function base32Bytes(b32) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = b32.replace(/[\s=]/g, '').toUpperCase();
  const out = new Uint8Array(Math.floor((clean.length * 5) / 8));
  let bits = 0, value = 0, i = 0;
  for (const c of clean) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error('bad base32');
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out[i++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  return out;
}

const HASHES = { SHA1: 'SHA-1', SHA256: 'SHA-256', SHA512: 'SHA-512' };

// Keeps the token of a setup reply (the API's, or the success page's same values):
// the key is imported non-extractable and the raw bytes are wiped.
async function saveSetup(e) {
  const raw = base32Bytes(e.secret);
  const key = await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: HASHES[e.algorithm] || 'SHA-1' }, false, ['sign']);
  raw.fill(0);
  delete e.secret;
  delete e.otpauth_uri;
  const t = {
    id: e.issuer + '\u0000' + e.account,
    issuer: e.issuer,
    account: e.account,
    period: e.period,
    digits: e.digits,
    algorithm: e.algorithm,
    expires_at: e.expires_at,
    renewal_available_from: e.renewal_available_from,
    key,
  };
  await putToken(t);
  return t;
}
