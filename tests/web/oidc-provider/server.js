// A local OpenID provider for tilgang's relying-party tests, built on the
// certified `oidc-provider` package: ID-porten-shaped (acr levels, a `pid`
// claim, end-session), offline, in memory, with made-up test accounts only.
//
// Usage: node server.js [--port N] [--client-id ID] [--client-secret S]
//          [--redirect-uri URI]... [--post-logout-redirect-uri URI]...
//          [--auth-method client_secret_basic|client_secret_post] [--exit-with-stdin]
// Each option can also come from the environment (OIDC_PORT, OIDC_CLIENT_ID,
// OIDC_CLIENT_SECRET, OIDC_REDIRECT_URIS and OIDC_POST_LOGOUT_REDIRECT_URIS
// space-separated, OIDC_AUTH_METHOD). Port 0 (the default) picks a free one.
// Once listening it prints one line, `issuer=http://127.0.0.1:PORT`, on stdout.
//
// Logging in: the login page (GET /interaction/<uid>) is a form with one
// field, `login`, naming a test account below (by name or by pid); it posts to
// /interaction/<uid>/login. There is no password and no consent page: the
// client is first-party, so its grant is made at once. README.md lists the
// accounts.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// The test accounts, by login name. `acr` is the level a login as that
// account is given, whatever the client asked for (as if the person had
// chosen that way of logging in); `null` gives a token without `acr`.
const ACCOUNTS = {
  dagl: { pid: '01017012345', name: 'Dagny Daglig Leder', acr: 'idporten-loa-substantial' },
  hoy: { pid: '02029054321', name: 'Håkon Høy', acr: 'idporten-loa-high' },
  lav: { pid: '03038512345', name: 'Lars Lav', acr: 'idporten-loa-low' },
  utenacr: { pid: '04048012345', name: 'Uten Acr', acr: null },
  utenpid: { pid: null, name: 'Uten Pid', acr: 'idporten-loa-substantial' },
};

function findAccountName(login) {
  const wanted = String(login ?? '').trim();
  if (Object.hasOwn(ACCOUNTS, wanted)) return wanted;
  return Object.keys(ACCOUNTS).find((name) => ACCOUNTS[name].pid === wanted);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'post-logout-redirect-uri': { type: 'string', multiple: true },
    'auth-method': { type: 'string' },
    'exit-with-stdin': { type: 'boolean' },
  },
});
const env = process.env;
const words = (s) => (s ?? '').split(/\s+/).filter(Boolean);
const port = Number(args.port ?? env.OIDC_PORT ?? 0);
const clientId = args['client-id'] ?? env.OIDC_CLIENT_ID ?? 'tilgang-web';
const clientSecret = args['client-secret'] ?? env.OIDC_CLIENT_SECRET ?? 'test-secret-not-for-production';
const redirectUris = args['redirect-uri'] ?? words(env.OIDC_REDIRECT_URIS);
const postLogoutRedirectUris = args['post-logout-redirect-uri']
  ?? words(env.OIDC_POST_LOGOUT_REDIRECT_URIS);
const authMethod = args['auth-method'] ?? env.OIDC_AUTH_METHOD ?? 'client_secret_basic';
if (redirectUris.length === 0) {
  redirectUris.push('http://127.0.0.1:8080/auth/callback');
}
if (postLogoutRedirectUris.length === 0) {
  postLogoutRedirectUris.push(new URL('/', redirectUris[0]).href);
}

// A new RS256 signing key on every start: nothing secret is on disk.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-${randomBytes(6).toString('hex')}`,
  use: 'sig',
  alg: 'RS256',
};

function configuration() {
  return {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutRedirectUris,
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: authMethod,
      // Only so that ID tokens carry `sid`, as ID-porten's do; nothing
      // listens there, and only a confirmed logout would post to it.
      backchannel_logout_uri: new URL('/auth/backchannel-logout', redirectUris[0]).href,
      backchannel_logout_session_required: true,
    }],
    // Only the method the client uses is offered, so a test can start a
    // provider whose metadata leaves out client_secret_basic.
    clientAuthMethods: [authMethod],
    jwks: { keys: [signingKey] },
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    acrValues: ['idporten-loa-low', 'idporten-loa-substantial', 'idporten-loa-high'],
    claims: {
      acr: null,
      sid: null,
      auth_time: null,
      iss: null,
      openid: ['sub', 'pid'],
      profile: ['name'],
    },
    // Scope-requested claims (`pid`, `name`) in the ID token, as ID-porten does.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // First-party client: every scope and claim asked for is granted, so
    // there is no consent page (ID-porten has none either).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const grant = await ctx.oidc.provider.Grant.find(grantId);
        if (grant) return grant;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile');
      grant.addOIDCClaims(['pid', 'name']);
      await grant.save();
      return grant;
    },
    async findAccount(_ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          const claims = { sub: id, name: account.name };
          if (account.pid !== null) claims.pid = account.pid;
          return claims;
        },
      };
    },
    ttl: { Session: 3600, Interaction: 600, AuthorizationCode: 60, IdToken: 600, AccessToken: 600, Grant: 3600 },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre id="error">${escape(JSON.stringify(out, null, 2))}</pre>`);
    },
  };
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function loginPage(uid, problem) {
  const accounts = Object.entries(ACCOUNTS)
    .map(([name, a]) => `<li><code>${escape(name)}</code> (${escape(a.acr ?? 'no acr')})</li>`)
    .join('');
  return page('Test login', `${problem ? `<p id="problem">${escape(problem)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label for="login">Test account</label>
<input id="login" name="login" type="text" required autofocus>
<button id="submit" type="submit">Log in</button>
</form>
<ul>${accounts}</ul>
<p><a id="abort" href="/interaction/${escape(uid)}/abort">Cancel</a></p>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// The interaction routes; everything else is the provider's.
async function interaction(provider, req, res, path) {
  const [uid, action] = path.split('/').slice(2);
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end('interaction mismatch');
    return;
  }
  if (action === undefined && req.method === 'GET') {
    if (details.prompt.name !== 'login') {
      res.writeHead(501, { 'content-type': 'text/plain' }).end(`prompt ${details.prompt.name} is not implemented`);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(loginPage(uid));
    return;
  }
  if (action === 'login' && req.method === 'POST') {
    const form = await readForm(req);
    const name = findAccountName(form.get('login'));
    if (name === undefined) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(loginPage(uid, 'No such test account'));
      return;
    }
    const { acr } = ACCOUNTS[name];
    const login = { accountId: name, amr: ['test'] };
    if (acr !== null) login.acr = acr;
    await provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'abort' && req.method === 'GET') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the person cancelled the login',
    }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    if (path.startsWith('/interaction/')) {
      interaction(provider, req, res, path).catch((err) => {
        if (!res.headersSent) {
          res.writeHead(400, { 'content-type': 'text/plain' });
        }
        res.end(`interaction failed: ${err.message}`);
      });
    } else {
      callback(req, res);
    }
  });
  process.stdout.write(`issuer=${issuer}\n`);
});

// With --exit-with-stdin it ends when its standard input closes, so a test
// that dies (and with it the pipe) leaves no provider behind.
if (args['exit-with-stdin']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
