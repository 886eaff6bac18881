const t0 = performance.now();
const { GoTrueClient } = await import("@supabase/auth-js");

// No storage, no timers: the closest to "construct a client and do nothing".
const client = new GoTrueClient({ url: "http://127.0.0.1:9/auth/v1", persistSession: false, autoRefreshToken: false });
const t1 = performance.now();
void globalThis.fetch;
process.stdout.write(`${performance.now()} ${t1 - t0}\n`);
void client;
