// The token app's service worker: keeps the app's own files so it opens and shows codes
// offline. The network is asked first (an update shows at once), the copy when it fails.
// The API is never cached.
'use strict';

const CACHE = 'otpd-token-app-v2';
const FILES = ['/app/', '/app/store.js', '/app/app.js', '/app/manifest.webmanifest', '/app/icon.svg'];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || !url.pathname.startsWith('/app/')) {
    return;
  }
  const key = url.pathname === '/app/index.html' ? '/app/' : url.pathname;
  e.respondWith(
    fetch(e.request)
      .then((r) => {
        if (r.ok && FILES.includes(key)) {
          const copy = r.clone();
          caches.open(CACHE).then((c) => c.put(key, copy));
        }
        return r;
      })
      .catch(() => caches.match(key).then((r) => r || Response.error())),
  );
});
