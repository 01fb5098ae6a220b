#!/usr/bin/env python3
"""An adversarial OpenID provider for berth's OpenID Connect tests: it runs the code flow
without any person (`/authorize` answers at once) and hands out the ID token of the mode it
is set to, good or bad in one named way. JWS signing is issuer.py's (`cryptography` only);
the `verify` check uses `jwcrypto`, so neither side checks itself.

Modes:
  serve --client-id ID --client-secret SECRET
      A provider on 127.0.0.1, port 0, with issuer `http://127.0.0.1:PORT`. Prints one JSON
      line {"issuer", "port"} once bound; exits when stdin closes. Endpoints:
        GET  /.well-known/openid-configuration
        GET  /authorize   response_type=code, client_id, redirect_uri, state, nonce,
                          code_challenge, code_challenge_method=S256 (PKCE is required): 302
                          to redirect_uri with code and the same state; a request it refuses
                          goes back with error=invalid_request (or is a 400 when it has no
                          usable redirect_uri or client).
        POST /token       grant_type=authorization_code, code (one use), redirect_uri (the
                          authorize one), code_verifier (its S256 must be the challenge);
                          the client authenticates with HTTP Basic only (client_secret_basic).
                          Answers {access_token, token_type, expires_in, id_token}.
        GET  /jwks        the one RSA key (kid KID) the good tokens are signed with.
        GET  /userinfo    Bearer access token: the user's claims (by the token's mode).
        POST /__test/mode {"mode": MODE}: the mode of every token issued from now on.
      And GitHub's OAuth2 as GitHub answers it (no OpenID): GET /login/oauth/authorize
      (client_id, redirect_uri, state; PKCE when a challenge is sent), POST
      /login/oauth/access_token (client_id and client_secret in the form; an error is a 200
      with {"error"}, as GitHub's), and the API under /api: GET /api/user/emails (alice's
      primary verified address and another one) and GET /api/user/orgs (["devs"] as logins);
      the API refuses a request without a User-Agent (403), as GitHub's does.
        GET  /__test/requests  what it was sent: [{path, query, form, authorization,
                               outcome}] (test-only: secrets included).
      The user is alice: sub USER_SUB, email alice@example.org, groups ["devs"]; claims in
      both the ID token and userinfo.
  verify
      stdin {"token", "jwks", "hmac_secret"}: prints {"header", "claims", "valid_jwks": bool
      (an RS/PS/ES signature verifying with a key of jwks, by jwcrypto), "valid_hmac": bool
      (HS256 with hmac_secret)}; neither for alg none.

Token modes (MODES): good; other_issuer (iss is this server under another URL, same key);
expired (exp an hour ago); wrong_audience; wrong_nonce; no_nonce; bad_signature (signed by
a key not in the JWKS, under the JWKS key's kid); alg_none; hs256 (HMAC keyed with the
client secret); no_email (no email claim anywhere); userinfo_other_sub (userinfo names
another subject than the ID token).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from issuer import b64url, public_jwk, sign_jws  # noqa: E402

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

MODES = [
    "good",
    "other_issuer",
    "expired",
    "wrong_audience",
    "wrong_nonce",
    "no_nonce",
    "bad_signature",
    "alg_none",
    "hs256",
    "no_email",
    "userinfo_other_sub",
]
KID = "evil-rsa-1"
USER_SUB = "alice-0001"
USER_EMAIL = "alice@example.org"
USER_GROUPS = ["devs"]
TOKEN_LIFETIME_SECONDS = 300
CODE_LIFETIME_SECONDS = 120
# RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~].
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
MAX_BODY_BYTES = 64 * 1024


class State:
    """What the server keeps: its keys, the mode, codes and access tokens issued, requests."""

    def __init__(self, client_id, client_secret):
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issuer = ""
        self.other_issuer = ""
        self.mode = "good"
        self.codes = {}
        self.access_tokens = {}
        self.requests = []
        self.lock = threading.Lock()

    def jwks(self):
        jwk = public_jwk(self.key.public_key())
        jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def id_token(self, mode, nonce):
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": USER_SUB,
            "aud": self.client_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "auth_time": now,
            "nonce": nonce,
            "email": USER_EMAIL,
            "email_verified": True,
            "groups": USER_GROUPS,
        }
        header = {"typ": "JWT", "kid": KID}
        if mode == "other_issuer":
            claims["iss"] = self.other_issuer
        elif mode == "expired":
            claims["iat"] = now - 7200
            claims["auth_time"] = now - 7200
            claims["exp"] = now - 3600
        elif mode == "wrong_audience":
            claims["aud"] = "someone-else"
        elif mode == "wrong_nonce":
            claims["nonce"] = b64url(os.urandom(16))
        elif mode == "no_nonce":
            del claims["nonce"]
        elif mode == "no_email":
            del claims["email"]
            del claims["email_verified"]
        if mode == "bad_signature":
            return sign_jws("RS256", self.other_key, header, claims)
        if mode == "alg_none":
            return sign_jws("none", None, {"typ": "JWT"}, claims)
        if mode == "hs256":
            return sign_jws("HS256", None, {"typ": "JWT"}, claims, self.client_secret.encode())
        return sign_jws("RS256", self.key, header, claims)

    def userinfo(self, mode):
        if mode == "userinfo_other_sub":
            return {"sub": "mallory-0002", "email": "mallory@example.org", "email_verified": True, "groups": ["admins"]}
        claims = {"sub": USER_SUB, "email": USER_EMAIL, "email_verified": True, "groups": USER_GROUPS}
        if mode == "no_email":
            del claims["email"]
            del claims["email_verified"]
        return claims


def discovery(issuer):
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "token_endpoint": issuer + "/token",
        "jwks_uri": issuer + "/jwks",
        "userinfo_endpoint": issuer + "/userinfo",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "email", "email_verified", "groups"],
    }


def with_query(url, params):
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class Handler(BaseHTTPRequestHandler):
    state = None

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def record(self, url, form, outcome):
        entry = {
            "method": self.command,
            "path": url.path,
            "query": dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
            "form": form,
            "authorization": self.headers.get("Authorization"),
            "outcome": outcome,
        }
        with self.state.lock:
            self.state.requests.append(entry)

    def read_form(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        body = self.rfile.read(length).decode()
        return dict(urllib.parse.parse_qsl(body, keep_blank_values=True)), body

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        state = self.state
        if url.path == "/.well-known/openid-configuration":
            self.record(url, None, "discovery")
            return self.reply(200, discovery(state.issuer))
        if url.path == "/jwks":
            self.record(url, None, "jwks")
            return self.reply(200, state.jwks())
        if url.path == "/authorize":
            return self.authorize(url)
        if url.path == "/userinfo":
            return self.userinfo(url)
        if url.path == "/login/oauth/authorize":
            return self.github_authorize(url)
        if url.path in ("/api/user/emails", "/api/user/orgs"):
            return self.github_api(url)
        if url.path == "/__test/requests":
            with state.lock:
                return self.reply(200, list(state.requests))
        return self.reply(404, {"error": "not_found"})

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            return self.token(url)
        if url.path == "/login/oauth/access_token":
            return self.github_token(url)
        if url.path == "/__test/mode":
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, MAX_BODY_BYTES)) or b"{}")
            mode = body.get("mode")
            if mode not in MODES:
                return self.reply(400, {"error": f"unknown mode {mode!r}", "modes": MODES})
            with self.state.lock:
                self.state.mode = mode
            return self.reply(200, {"mode": mode})
        return self.reply(404, {"error": "not_found"})

    def authorize(self, url):
        state = self.state
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != state.client_id or not redirect_uri.startswith(("http://", "https://")):
            self.record(url, None, "refused: unknown client or no redirect_uri")
            return self.reply(400, {"error": "invalid_request", "error_description": "client_id or redirect_uri"})
        problems = []
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if "openid" not in query.get("scope", "").split():
            problems.append("scope lacks openid")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("PKCE S256 is required")
        if not query.get("state"):
            problems.append("no state")
        if not query.get("nonce"):
            problems.append("no nonce")
        back = {"state": query["state"]} if query.get("state") else {}
        if problems:
            self.record(url, None, "refused: " + "; ".join(problems))
            return self.redirect(with_query(redirect_uri, {"error": "invalid_request", "error_description": "; ".join(problems), **back}))
        code = b64url(os.urandom(24))
        with state.lock:
            state.codes[code] = {
                "redirect_uri": redirect_uri,
                "challenge": query["code_challenge"],
                "nonce": query["nonce"],
                "expires": time.time() + CODE_LIFETIME_SECONDS,
                "used": False,
            }
        self.record(url, None, "code")
        return self.redirect(with_query(redirect_uri, {"code": code, **back}))

    def client_authenticated(self):
        """client_secret_basic: Basic base64(urlencode(id) ":" urlencode(secret)) (RFC 6749
        2.3.1); the plain pair is taken too."""
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        state = self.state
        for decode in (lambda text: text, urllib.parse.unquote_plus):
            if hmac.compare_digest(decode(user), state.client_id) and hmac.compare_digest(decode(password), state.client_secret):
                return True
        return False

    def token(self, url):
        state = self.state
        try:
            form, _ = self.read_form()
        except ValueError as error:
            self.record(url, None, f"refused: {error}")
            return self.reply(400, {"error": "invalid_request"})

        def refuse(status, error, why):
            self.record(url, form, f"refused: {why}")
            return self.reply(status, {"error": error, "error_description": why})

        if not self.client_authenticated():
            return refuse(401, "invalid_client", "client_secret_basic with the right secret is required")
        if "client_secret" in form:
            return refuse(400, "invalid_request", "the secret was also sent in the body")
        if form.get("grant_type") != "authorization_code":
            return refuse(400, "unsupported_grant_type", "grant_type must be authorization_code")
        with state.lock:
            issued = state.codes.get(form.get("code", ""))
            replayed = issued is not None and issued["used"]
            if issued is not None:
                issued["used"] = True
            mode = state.mode
        if issued is None or replayed or issued["expires"] < time.time():
            return refuse(400, "invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != issued["redirect_uri"]:
            return refuse(400, "invalid_grant", "redirect_uri differs from the authorize one")
        verifier = form.get("code_verifier", "")
        if not VERIFIER.match(verifier):
            return refuse(400, "invalid_grant", "no valid code_verifier")
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        if not hmac.compare_digest(challenge, issued["challenge"]):
            return refuse(400, "invalid_grant", "code_verifier does not match the challenge")
        access_token = b64url(os.urandom(24))
        with state.lock:
            state.access_tokens[access_token] = {"mode": mode, "expires": time.time() + TOKEN_LIFETIME_SECONDS}
        self.record(url, form, f"token ({mode})")
        return self.reply(
            200,
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "id_token": state.id_token(mode, issued["nonce"]),
            },
        )

    def userinfo(self, url):
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        with self.state.lock:
            issued = self.state.access_tokens.get(token) if scheme.lower() == "bearer" else None
        if issued is None or issued["expires"] < time.time():
            self.record(url, None, "refused: no valid access token")
            return self.reply(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        self.record(url, None, f"userinfo ({issued['mode']})")
        return self.reply(200, self.state.userinfo(issued["mode"]))


    def github_authorize(self, url):
        state = self.state
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != state.client_id or not redirect_uri.startswith(("http://", "https://")):
            self.record(url, None, "refused: unknown client or no redirect_uri")
            return self.reply(400, {"error": "invalid_request"})
        code = b64url(os.urandom(20))
        with state.lock:
            state.codes[code] = {
                "redirect_uri": redirect_uri,
                "challenge": query.get("code_challenge"),
                "nonce": None,
                "expires": time.time() + CODE_LIFETIME_SECONDS,
                "used": False,
            }
        self.record(url, None, "github code")
        return self.redirect(with_query(redirect_uri, {"code": code, "state": query.get("state", "")}))

    def github_token(self, url):
        state = self.state
        form, _ = self.read_form()

        def refuse(error):
            # GitHub answers a bad code with 200 and an error field.
            self.record(url, form, f"refused: {error}")
            return self.reply(200, {"error": error, "error_description": error})

        if form.get("client_id") != state.client_id or not hmac.compare_digest(form.get("client_secret", ""), state.client_secret):
            return refuse("incorrect_client_credentials")
        with state.lock:
            issued = state.codes.get(form.get("code", ""))
            replayed = issued is not None and issued["used"]
            if issued is not None:
                issued["used"] = True
        if issued is None or replayed or issued["expires"] < time.time():
            return refuse("bad_verification_code")
        if form.get("redirect_uri") != issued["redirect_uri"]:
            return refuse("redirect_uri_mismatch")
        if issued["challenge"]:
            verifier = form.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != issued["challenge"]:
                return refuse("bad_verification_code")
        access_token = "gho_" + b64url(os.urandom(24))
        with state.lock:
            state.access_tokens[access_token] = {"mode": "good", "expires": time.time() + TOKEN_LIFETIME_SECONDS}
        self.record(url, form, "github token")
        return self.reply(200, {"access_token": access_token, "token_type": "bearer", "scope": "read:org,user:email"})

    def github_api(self, url):
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        with self.state.lock:
            issued = self.state.access_tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        if not self.headers.get("User-Agent"):
            self.record(url, None, "refused: no User-Agent")
            return self.reply(403, {"message": "Request forbidden by administrative rules."})
        if issued is None:
            self.record(url, None, "refused: bad credentials")
            return self.reply(401, {"message": "Bad credentials"})
        self.record(url, None, "github api")
        if url.path == "/api/user/emails":
            return self.reply(200, [
                {"email": "alice-old@example.org", "primary": False, "verified": True, "visibility": None},
                {"email": USER_EMAIL, "primary": True, "verified": True, "visibility": "private"},
            ])
        return self.reply(200, [{"login": group, "id": index + 1} for index, group in enumerate(USER_GROUPS)])


def serve(args):
    options = dict(zip(args[::2], args[1::2]))
    Handler.state = State(options["--client-id"], options["--client-secret"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    Handler.state.issuer = f"http://127.0.0.1:{port}"
    Handler.state.other_issuer = f"http://localhost:{port}"

    def watch_stdin():
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps({"issuer": Handler.state.issuer, "port": port}), flush=True)
    server.serve_forever()


def verify():
    from jwcrypto import jwk, jws

    spec = json.load(sys.stdin)
    token = spec["token"]
    header_b64, payload_b64, _ = token.split(".")

    def decode(part):
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    header, claims = decode(header_b64), decode(payload_b64)

    def verifies(key, algs):
        if header.get("alg") not in algs:
            return False
        try:
            signed = jws.JWS()
            signed.deserialize(token)
            signed.allowed_algs = algs
            signed.verify(key)
            return True
        except Exception:  # jwcrypto raises several kinds for a bad signature
            return False

    keys = jwk.JWKSet.from_json(json.dumps(spec["jwks"]))
    valid_jwks = any(verifies(key, ["RS256", "PS256", "ES256"]) for key in keys["keys"])
    valid_hmac = False
    if spec.get("hmac_secret") is not None and header.get("alg") == "HS256":
        # By hand: jwcrypto refuses HMAC keys shorter than the hash, as client secrets are.
        signing_input, _, signature = token.rpartition(".")
        expected = hmac.new(spec["hmac_secret"].encode(), signing_input.encode(), hashlib.sha256).digest()
        valid_hmac = hmac.compare_digest(b64url(expected), signature)
    print(json.dumps({"header": header, "claims": claims, "valid_jwks": valid_jwks, "valid_hmac": valid_hmac}))


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "serve":
        serve(sys.argv[2:])
    elif command == "verify":
        verify()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
