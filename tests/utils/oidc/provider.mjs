// A real OpenID Connect provider (npm oidc-provider) on loopback, for the plane's and the
// CLI's sign-in tests. Started by tests/utils/oidc.py:
//   node provider.mjs PORT PACKAGE_DIR
// PACKAGE_DIR is the installed oidc-provider package (scripts/test.sh puts it under .tools/).
// Environment:
//   OIDC_JWKS                  private JSON Web Key Set to sign with (the first key signs)
//   OIDC_ACCESS_TOKEN_TTL      seconds an access token lives (default 300)
//   OIDC_AUDIENCE              resource indicator of the plane (default urn:arkor:plane)
//   OIDC_OTHER_AUDIENCE        a second resource server (default urn:example:other-api)
// Any login name signs in (the development interactions); alice, bob, carol and eve have
// fixed claims, other names get <name>@example.com, verified, no groups.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [, , portArgument, packageDir] = process.argv;
const port = Number(portArgument);
if (!Number.isInteger(port) || port <= 0 || !packageDir) {
  console.error('usage: node provider.mjs PORT PACKAGE_DIR');
  process.exit(2);
}
const { main } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
const { default: Provider } = await import(pathToFileURL(join(packageDir, main)).href);
const issuer = `http://127.0.0.1:${port}`;
const accessTokenTTL = Number(process.env.OIDC_ACCESS_TOKEN_TTL || 300);
const audience = process.env.OIDC_AUDIENCE || 'urn:arkor:plane';
const otherAudience = process.env.OIDC_OTHER_AUDIENCE || 'urn:example:other-api';

const USERS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: [] },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob Example', groups: ['ml-team'] },
  carol: { email: 'carol@example.com', email_verified: true, name: 'Carol Example', groups: [] },
  // Claims bob's address without having verified it.
  eve: { email: 'bob@example.com', email_verified: false, name: 'Eve Example', groups: ['ml-team-x'] },
};

function claimsOf(id) {
  return USERS[id] || { email: `${id}@example.com`, email_verified: true, name: id, groups: [] };
}

const configuration = {
  clients: [
    {
      client_id: 'arkor-cli',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
    },
  ],
  jwks: process.env.OIDC_JWKS ? JSON.parse(process.env.OIDC_JWKS) : undefined,
  cookies: { keys: ['arkor-test-provider'] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id, ...claimsOf(id) }; } };
  },
  // Access tokens carry the identity the plane needs, as hosted providers can be told to.
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    return claimsOf(token.accountId);
  },
  // A refresh token for every code and device grant, without the offline_access consent dance.
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  pkce: { required: () => true },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || accessTokenTTL,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 3600,
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf || audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== audience && resource !== otherAudience) {
          throw new Provider.errors.InvalidTarget(`unknown resource ${resource}`);
        }
        return {
          scope: 'openid email profile groups offline_access',
          audience: resource,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
};

const provider = new Provider(issuer, configuration);
const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
