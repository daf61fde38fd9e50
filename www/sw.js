// The page's service worker: it keeps the page, its WebAssembly and every model the page has
// loaded in a cache named after the build, so that a later visit works with no network (a share
// link too, for a model loaded before). Answers come from the network whenever it answers, so a
// new build shows at once; its cache then replaces the old one. scripts/build-web.sh writes the
// build's name and its files into BUILD and PRECACHE.
const BUILD = "dev";
const PRECACHE = ["./"];
const CACHE = `intervene-${BUILD}`;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(PRECACHE))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names
        .filter((name) => name.startsWith("intervene-") && name !== CACHE)
        .map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  // The page is stored once, whatever view its link asks for.
  const key = request.mode === "navigate" ? new URL("./", self.location).href : request;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(key, copy)));
        }
        return response;
      })
      .catch(() => caches.open(CACHE)
        .then((cache) => cache.match(key))
        .then((hit) => hit || Response.error())),
  );
});
