import { GoTrueClient } from "@supabase/auth-js";

// No storage, no timers: the closest to "construct a client and do nothing".
const client = new GoTrueClient({ url: "http://127.0.0.1:9/auth/v1", persistSession: false, autoRefreshToken: false });
void globalThis.fetch;
process.stdout.write(`${performance.now()}\n`);
void client;
