// The model worker's entry. The page sends its own compiled WebAssembly module and the URL of its
// JavaScript bindings; starting them here runs web/src/app/worker.rs, which takes over the
// worker's messages and says when it is ready.
self.addEventListener("message", async (event) => {
  const { glue, module } = event.data;
  try {
    const bindings = await import(glue);
    await bindings.default({ module_or_path: module });
  } catch (error) {
    self.postMessage({ id: null, json: JSON.stringify({ Crashed: `the model's worker could not start (${error})` }) });
  }
}, { once: true });
