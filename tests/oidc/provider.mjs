// A real OpenID provider for berth's OpenID Connect tests: panva's `oidc-provider` (the
// certified Node.js implementation, pinned in package.json beside this file), on loopback.
//
//   node provider.mjs [--port N] [--issuer URL]
//
// Module: `oidc-provider` is imported from $BERTH_OIDC_PROVIDER_DIR/node_modules (scripts/test
// runs `npm ci` there with package.json and package-lock.json of this directory; default
// $HOME/.cache/berth/oidc-provider), so nothing is installed into the checkout.
//
// Listens on 127.0.0.1 and, when the machine has it, [::1], on the same port (`--port`, else a
// free one), so that `localhost` reaches it whichever address a client resolves it to. The
// issuer is `--issuer`, else `http://localhost:PORT`: a different site from berth on
// 127.0.0.1, as a real IdP is. When ready, prints one JSON line {"issuer", "port"} on stdout;
// everything else (a line per request, oidc-provider's warnings) goes to stderr. Exits when
// its stdin closes, so it never outlives the test that started it.
//
// Accounts (login name / password): alice / alice-pw (alice@example.org, groups ["devs"]),
// bob / bob-pw (bob@example.org, groups ["ops"]). Scopes map to claims: `email` -> email and
// email_verified, `profile` -> name and preferred_username, `groups` -> groups. As the spec
// has it for the code flow (conformIdTokenClaims), these claims are served by userinfo; the ID
// token holds sub, nonce, at_hash and the like.
//
// Interactions are this file's own pages, not oidc-provider's dev ones: the login form
// `form#idp-login` (inputs `login`, `password`; a wrong password re-renders it with a
// `[role=alert]`) and the consent form `form#idp-consent` (a submit button; `#idp-scopes`
// lists what is asked). PKCE (S256) is required of every client.
//
// Test control (plain JSON over HTTP, not part of OpenID):
//   POST /__test/clients {client_id, client_secret, redirect_uris}: registers (or replaces) a
//     confidential web client (authorization_code, client_secret_basic). 201 {client_id}, or
//     400 {error} with oidc-provider's reason when the metadata is refused.

import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

const ACCOUNTS = {
  alice: {
    password: 'alice-pw', email: 'alice@example.org', name: 'Alice', groups: ['devs'],
  },
  bob: {
    password: 'bob-pw', email: 'bob@example.org', name: 'Bob', groups: ['ops'],
  },
};
const LISTEN_ATTEMPTS = 5;
// The largest form body an interaction page reads.
const MAX_FORM_BYTES = 16 * 1024;
const MAX_CONTROL_BYTES = 64 * 1024;

function parseArgs(argv) {
  const args = { port: 0, issuer: undefined };
  for (let i = 0; i < argv.length; i += 1) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case '--port': args.port = Number(value); i += 1; break;
      case '--issuer': args.issuer = value; i += 1; break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    throw new Error(`bad --port ${args.port}`);
  }
  return args;
}

async function loadProvider() {
  const dir = process.env.BERTH_OIDC_PROVIDER_DIR
    || path.join(os.homedir(), '.cache', 'berth', 'oidc-provider');
  const require = createRequire(path.join(dir, 'package.json'));
  let entry;
  try {
    entry = require.resolve('oidc-provider');
  } catch (error) {
    throw new Error(`oidc-provider is not installed in ${dir} (scripts/test installs it): ${error.message}`);
  }
  const Provider = (await import(pathToFileURL(entry).href)).default;
  // Its in-memory adapter, made explicitly (the default one warns that it is for development,
  // which is what this is); also where the test clients are registered.
  const memory = path.join(path.dirname(entry), 'adapters', 'memory_adapter.js');
  const { createMemoryAdapter } = await import(pathToFileURL(memory).href);
  return { Provider, adapter: createMemoryAdapter() };
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - Test IdP</title>
<style>
body { font-family: sans-serif; background: #eef1f5; margin: 0; }
main { max-width: 24rem; margin: 4rem auto; background: #fff; padding: 1.5rem 2rem;
  border-radius: 6px; box-shadow: 0 1px 4px rgba(0, 0, 0, .2); }
h1 { font-size: 1.4rem; margin-top: 0; }
label { display: block; margin: .8rem 0 .2rem; }
input { width: 100%; box-sizing: border-box; padding: .4rem; font-size: 1rem; }
button { margin-top: 1.2rem; padding: .5rem 1.2rem; font-size: 1rem; }
[role=alert] { color: #a00; background: #fee; padding: .5rem; border-radius: 4px; }
.idp { color: #567; font-size: .9rem; }
</style>
</head>
<body><main><p class="idp">Test IdP (oidc-provider)</p>${body}</main></body>
</html>`;
}

function loginPage(uid, clientId, login, error) {
  const alert = error ? `<p role="alert">${escapeHtml(error)}</p>` : '';
  return page('Sign in', `<h1>Sign in to continue to ${escapeHtml(clientId)}</h1>${alert}
<form id="idp-login" method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="login">Login</label><input id="login" name="login" value="${escapeHtml(login || '')}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>`);
}

function consentPage(uid, clientId, account, scopes) {
  const items = scopes.map((scope) => `<li>${escapeHtml(scope)}</li>`).join('');
  return page('Authorize', `<h1>Authorize ${escapeHtml(clientId)}</h1>
<p>Signed in as <strong id="idp-account">${escapeHtml(account)}</strong>. ${escapeHtml(clientId)} asks for:</p>
<ul id="idp-scopes">${items}</ul>
<form id="idp-consent" method="post" action="/interaction/${escapeHtml(uid)}/confirm">
<button type="submit">Continue</button>
</form>`);
}

function send(res, status, type, body) {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
    .export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    .export({ format: 'jwk' });
  return [{ ...rsa, kid: 'rsa-1', use: 'sig' }, { ...ec, kid: 'p256-1', use: 'sig' }];
}

function configuration(adapter) {
  return {
    adapter,
    clients: [],
    jwks: { keys: signingKeys() },
    cookies: { keys: [`berth-test-${process.pid}-${Date.now()}`] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
    },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const account = ACCOUNTS[sub];
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: account.email,
            email_verified: true,
            name: account.name,
            preferred_username: sub,
            groups: account.groups,
          };
        },
      };
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      const lines = Object.entries(out)
        .map(([key, value]) => `<p><strong>${escapeHtml(key)}</strong>: ${escapeHtml(value)}</p>`)
        .join('');
      ctx.body = page('Error', `<h1>Something went wrong</h1><div role="alert">${lines}</div>`);
    },
  };
}

// The interaction pages: GET shows the prompt's page, POST .../login checks the password,
// POST .../confirm grants what the client asked for.
async function interaction(provider, req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, 'text/plain', 'interaction mismatch');
    return;
  }
  const { prompt, params, session } = details;
  const clientId = params.client_id;
  if (req.method === 'GET' && action === undefined) {
    if (prompt.name === 'login') {
      send(res, 200, 'text/html; charset=utf-8', loginPage(uid, clientId));
    } else {
      const scopes = String(params.scope || '').split(' ').filter(Boolean);
      send(res, 200, 'text/html; charset=utf-8', consentPage(uid, clientId, session.accountId, scopes));
    }
    return;
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const form = new URLSearchParams(await readBody(req, MAX_FORM_BYTES));
    const login = form.get('login') || '';
    const account = Object.hasOwn(ACCOUNTS, login) ? ACCOUNTS[login] : undefined;
    if (!account || account.password !== form.get('password')) {
      send(res, 401, 'text/html; charset=utf-8', loginPage(uid, clientId, login, 'Wrong login or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    await readBody(req, MAX_FORM_BYTES);
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }
  send(res, 400, 'text/plain', `no ${req.method} ${action || ''} in the ${prompt.name} prompt`);
}

async function registerClient(provider, req, res) {
  let body;
  try {
    body = JSON.parse(await readBody(req, MAX_CONTROL_BYTES));
  } catch (error) {
    send(res, 400, 'application/json', JSON.stringify({ error: `bad JSON: ${error.message}` }));
    return;
  }
  const { client_id: clientId, client_secret: clientSecret, redirect_uris: redirectUris } = body;
  if (typeof clientId !== 'string' || typeof clientSecret !== 'string' || !Array.isArray(redirectUris)) {
    send(res, 400, 'application/json', JSON.stringify({ error: 'need client_id, client_secret, redirect_uris' }));
    return;
  }
  const metadata = {
    client_id: clientId,
    client_secret: clientSecret,
    client_name: clientId,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  };
  await provider.Client.adapter.upsert(clientId, metadata);
  try {
    // Validates the metadata as a registration would (Client.find builds the client).
    await provider.Client.find(clientId);
  } catch (error) {
    await provider.Client.adapter.destroy(clientId);
    const reason = error.error_description || error.message;
    send(res, 400, 'application/json', JSON.stringify({ error: reason }));
    return;
  }
  send(res, 201, 'application/json', JSON.stringify({ client_id: clientId }));
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    const failed = (error) => reject(error);
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve(server.address().port);
    });
  });
}

// Binds 127.0.0.1 (port `wanted`, 0: any) and [::1] on the same port; a port taken on [::1]
// after 127.0.0.1 got it is tried again with another one.
async function bind(handler, wanted) {
  for (let attempt = 0; ; attempt += 1) {
    const v4 = http.createServer(handler);
    const port = await listen(v4, wanted, '127.0.0.1');
    const v6 = http.createServer(handler);
    try {
      await listen(v6, port, '::1');
      return { port, servers: [v4, v6] };
    } catch (error) {
      if (error.code === 'EADDRNOTAVAIL' || error.code === 'EAFNOSUPPORT') {
        return { port, servers: [v4] };
      }
      v4.close();
      if (wanted !== 0 || attempt + 1 >= LISTEN_ATTEMPTS) throw error;
    }
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { Provider, adapter } = await loadProvider();
  let callback = null;
  let provider = null;
  const handler = async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    res.on('finish', () => {
      process.stderr.write(`${req.method} ${url.pathname} -> ${res.statusCode}\n`);
    });
    try {
      if (url.pathname === '/favicon.ico') {
        res.writeHead(204).end();
      } else if (url.pathname === '/__test/clients' && req.method === 'POST') {
        await registerClient(provider, req, res);
      } else if (url.pathname.startsWith('/interaction/')) {
        await interaction(provider, req, res, url);
      } else {
        callback(req, res);
      }
    } catch (error) {
      process.stderr.write(`${req.method} ${url.pathname}: ${error.stack || error}\n`);
      if (!res.headersSent) {
        const body = page('Error', `<h1>Something went wrong</h1><p role="alert">${escapeHtml(error.message)}</p>`);
        send(res, error.statusCode || 500, 'text/html; charset=utf-8', body);
      }
    }
  };
  const { port, servers } = await bind(handler, args.port);
  const issuer = args.issuer || `http://localhost:${port}`;
  provider = new Provider(issuer, configuration(adapter));
  callback = provider.callback();
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ issuer, port, listening: servers.map((s) => s.address().address) })}\n`);
}

main().catch((error) => {
  process.stderr.write(`provider.mjs: ${error.stack || error}\n`);
  process.exit(1);
});
