"""Secret redaction and secret paths (nearline.workspace.secrets).

Every token below is obviously fake but pattern-valid, and assembled at run
time so that secret scanners looking at this repository don't flag it.
"""

from __future__ import annotations

import pytest

from nearline.workspace.secrets import REDACTED, is_secret_path, redact

# --------------------------------------------------------------------------- #
# fake secrets, built by concatenation
# --------------------------------------------------------------------------- #

AWS_ID = "AK" + "IA" + "TESTFAKE" + "00000000"
AWS_SECRET = "fake" * 10
GH_CLASSIC = "gh" + "p_" + "FAKE" * 9
GH_OAUTH = "gh" + "o_" + "FAKE" * 9
GH_USER = "gh" + "u_" + "FAKE" * 9
GH_SERVER = "gh" + "s_" + "FAKE" * 9
GH_REFRESH = "gh" + "r_" + "FAKE" * 9
GH_PAT = "github" + "_pat_" + "FAKE" * 6 + "_" + "FAKE" * 14
GITLAB = "gl" + "pat-" + "FAKE" * 5
SLACK_BOT = "xo" + "xb-" + "000000000000-" + "FAKEFAKEFAKE"
SLACK_USER = "xo" + "xp-" + "000000000000-" + "FAKEFAKEFAKE"
SLACK_HOOK_PATH = "T0000FAKE/B0000FAKE/" + "FAKE" * 6
SLACK_HOOK = "https://hooks." + "slack.com/services/" + SLACK_HOOK_PATH
STRIPE = "sk" + "_live_" + "FAKE" * 6
GOOGLE = "AI" + "za" + "Sy" + "F" * 33
JWT = "ey" + "JhbGciOiJub25lIn0" + ".ey" + "JzdWIiOiJmYWtlIn0" + "." + "FAKEsignature0"
PEM = (
    "-----BEGIN "
    + "RSA PRIVATE KEY-----\n"
    + "\n".join(["FAKE" * 16] * 12)
    + "\n-----END RSA "
    + "PRIVATE KEY-----\n"
)
OPENSSH = (
    "-----BEGIN "
    + "OPENSSH PRIVATE KEY-----\n"
    + "\n".join(["fake" * 16] * 6)
    + "\n-----END OPENSSH "
    + "PRIVATE KEY-----\n"
)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f'AWS_ACCESS_KEY_ID = "{AWS_ID}"', AWS_ID),
        (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
        (f'token = "{GH_CLASSIC}"', GH_CLASSIC),
        (f"headers = {{'Authorization': 'token {GH_OAUTH}'}}", GH_OAUTH),
        (f"x = '{GH_USER}'", GH_USER),
        (f"x = '{GH_SERVER}'", GH_SERVER),
        (f"x = '{GH_REFRESH}'", GH_REFRESH),
        (f"gh = '{GH_PAT}'", GH_PAT),
        (f"const gl = `{GITLAB}`;", GITLAB),
        (f"slack({SLACK_BOT!r})", SLACK_BOT),
        (f"slack({SLACK_USER!r})", SLACK_USER),
        (f"hook = '{SLACK_HOOK}'", SLACK_HOOK_PATH),
        (f"stripe.api_key_live = '{STRIPE}'", STRIPE),
        (f"maps({GOOGLE!r})", GOOGLE),
        (f"auth = 'Bearer {JWT}'", JWT),
        (
            "DATABASE_URL = 'postgres://admin:" + "fakepass99" + "@db.internal:5432/app'",
            "fakepass99",
        ),
        ('password = "' + "Fake" + "Pass1234" + '"', "FakePass1234"),
        ('DB_PASSWORD: str = "' + "Fake" + "Pass1234" + '"', "FakePass1234"),
        ('{"client_secret": "' + "fake" + "Secret0987" + '"}', "fakeSecret0987"),
        ("const apiKey = '" + "fake" + "ApiKey1234" + "';", "fakeApiKey1234"),
        ("API_TOKEN=" + "fake" + "Token1234", "fakeToken1234"),
        ("secret_key: " + "fake" + "yaml" + "Value99", "fakeyamlValue99"),
        # A suffix after the name (found by the adversarial prompt sweep).
        ('password_prod = "' + "Fake" + "Pass1234" + '"', "FakePass1234"),
        ("api_key_v2: '" + "fake" + "ApiKey1234" + "'", "fakeApiKey1234"),
        ("secret_key_base: " + "fake" + "Base0987", "fakeBase0987"),
        ("token2 = '" + "fake" + "Token1234" + "'", "fakeToken1234"),
        # ...and a value on the line below its name.
        ("const password =\n  '" + "Fake" + "Pass1234" + "';", "FakePass1234"),
    ],
)
def test_redacts_each_kind(line: str, secret: str) -> None:
    text = f"import os\n\n{line}\n\nprint('done')\n"
    r = redact(text)
    out = r.text
    assert r.count >= 1
    assert secret not in out
    assert REDACTED in out
    # surrounding code is kept
    assert out.startswith("import os\n\n")
    assert out.endswith("\n\nprint('done')\n")


def test_private_key_blocks() -> None:
    code = "KEY = '''\n" + PEM + "'''\nOTHER = 1\n" + "def f():\n    return 2\n" * 80
    r = redact(code)
    assert r.count == 1
    assert "FAKEFAKE" not in r.text
    assert "BEGIN" not in r.text and "END RSA" not in r.text
    assert "OTHER = 1" in r.text
    assert not r.mostly_secret

    r = redact(PEM)
    assert r.count == 1 and r.mostly_secret
    r = redact(OPENSSH)
    assert r.mostly_secret
    # unterminated block still redacted
    r = redact("x = 1\n" + PEM.split("-----END")[0])
    assert "FAKEFAKE" not in r.text


def test_no_false_positives_on_ordinary_code() -> None:
    code = """
import os
password = os.environ["DB_PASSWORD"]
password = get_password()
token = self.token
tokenizer_name = "bert-base-uncased"
sort_key = "abcdefgh12"
if password == "hunter2hunter2":
    pass
url = f"postgres://{user}:{password}@{host}/db"
api_key = "<your-api-key-here>"
password = "changeme"
def tokens_for(path):
    return count(path)
key = cache_key(item)
See https://example.com/docs and http://localhost:8080/x
"""
    r = redact(code)
    assert r.count == 0, r.text
    assert r.text == code


def test_redaction_is_idempotent_and_counts() -> None:
    text = f"a = '{GH_CLASSIC}'\nb = '{STRIPE}'\nc = '{GOOGLE}'\n"
    once = redact(text)
    assert once.count == 3
    twice = redact(once.text)
    assert twice.count == 0 and twice.text == once.text


@pytest.mark.parametrize(
    "rel",
    [
        ".env",
        ".env.local",
        "config/.env.production",
        ".envrc",
        "deploy/prod.env",
        "server.pem",
        "tls/server.key",
        "id_rsa",
        "home/.ssh/id_rsa.pub",
        "id_ed25519",
        "id_ecdsa",
        "cert.p12",
        "cert.pfx",
        "release.keystore",
        ".netrc",
        ".pgpass",
        "credentials",
        "credentials.json",
        ".aws/credentials",
        "secrets/db.txt",
        "app/secrets/nested/x.yaml",
        ".npmrc",
        ".pypirc",
        ".git-credentials",
        "infra/terraform.tfstate",
    ],
)
def test_secret_paths(rel: str) -> None:
    assert is_secret_path(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "src/main.py",
        "environment.py",
        "docs/secrets.md",
        "keys.py",
        "src/env/config.py",
        "tokenizer.json",
        "README.md",
        "secretsauce/x.py",
    ],
)
def test_not_secret_paths(rel: str) -> None:
    assert not is_secret_path(rel)


def test_secret_dir_query() -> None:
    assert is_secret_path("secrets/")
    assert is_secret_path("a/.ssh/")
    assert not is_secret_path("src/")
