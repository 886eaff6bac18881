// A Worker with a Durable Object broker, as a strict TypeScript user writes it.
import { AuthBroker, AuthError, brokeredSession, type AuthSession, type AuthSessionOptions, type BrokerPair, type BrokerResult, type BrokerStatus } from "auth-session/workers";

interface Env {
  AUTH_BROKER: DurableObjectNamespace<Broker>;
  AUTH_SESSION_HOST: string;
  ACCOUNTS: string;
}

/** One broker per account: the account's secrets picked by the object's name. */
export class Broker extends AuthBroker<Env> {
  override sessionOptions(env: Env): AuthSessionOptions {
    const accounts = JSON.parse(env.ACCOUNTS) as Record<string, { username: string; password: string }>;
    const credentials = accounts[this.ctx.id.name ?? "main"];
    if (!credentials) throw new Error("unknown account");
    return { host: env.AUTH_SESSION_HOST, credentials, refreshMarginSeconds: 300 };
  }
}

let session: AuthSession | undefined;

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    session ??= brokeredSession(env.AUTH_BROKER, { name: "main", host: env.AUTH_SESSION_HOST, refreshMarginSeconds: 240 });
    const stub = env.AUTH_BROKER.get(env.AUTH_BROKER.idFromName("main"));
    const perRequest = brokeredSession(stub, { host: env.AUTH_SESSION_HOST });
    const viaFactory = brokeredSession(() => env.AUTH_BROKER.get(env.AUTH_BROKER.idFromName("main")), { host: env.AUTH_SESSION_HOST });
    perRequest.dispose();
    viaFactory.dispose();
    const answer: BrokerResult<BrokerPair> = await stub.pair();
    if (!answer.ok) return Response.json({ error: answer.error.code, status: answer.error.status, retryable: answer.error.retryable }, { status: 502 });
    const pair: BrokerPair = answer.value;
    const status: BrokerStatus = await stub.status();
    const again = await stub.refresh(pair.version);
    if (!again.ok) return Response.json({ error: again.error.code, retryAfter: again.error.retryAfter ?? null }, { status: 502 });
    try {
      const products = await session.json<{ id: number }[]>("/api/v1/products", { waitUntil: ctx });
      return Response.json({ n: products.length, v: again.value.version, state: status.state, url: request.url });
    } catch (err) {
      if (AuthError.is(err)) return Response.json(err.toJSON(), { status: 502 });
      throw err;
    }
  },
} satisfies ExportedHandler<Env>;

// @ts-expect-error credentials belong to the broker, not to the isolate's session
brokeredSession({} as DurableObjectNamespace<Broker>, { name: "main", host: "https://api.example.com", credentials: { username: "u", password: "p" } });
