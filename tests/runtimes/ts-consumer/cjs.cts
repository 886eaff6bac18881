// The CommonJS view of the package's types (`require` → index.d.cts under nodenext).
// Only type-checked, never run.
import auth = require("auth-session");

async function useFromCommonJs(): Promise<number> {
  const session: auth.AuthSession = new auth.AuthSession({ host: "https://api.example.com" });
  const info: auth.SessionInfo = await session.login("demo", "demo-password");
  try {
    await session.revoke();
  } catch (err) {
    if (err instanceof auth.AuthError && err.code === "NETWORK_ERROR") return 0;
  }
  session.dispose();
  // @ts-expect-error host must be a string
  new auth.AuthSession({ host: 8787 });
  return info.clientId ?? -1;
}

export = useFromCommonJs;
