"""A project full of planted secrets, generated at test time (random values, assembled from
pieces so that secret scanners looking at this repository find nothing).

Every kind the index's rules cover is planted: in files that must never be read (``.env*``,
keys, ``.netrc``, ``credentials.json``, ...), in gitignored files, and inside otherwise
ordinary source files (next to real code, mid-line, in multi-line strings, in a file large
enough that a prompt window cuts through a private key). ``Planted.needles`` are the random
cores' 12-character pieces: no prompt may contain any of them.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

NEEDLE = 12
ALNUM = string.ascii_letters + string.digits


@dataclass
class Planted:
    root: Path
    secrets: dict[str, str] = field(default_factory=dict)  # kind -> random core
    files: list[Path] = field(default_factory=list)

    @property
    def needles(self) -> dict[str, str]:
        """12-character pieces of every random core -> the kind it belongs to."""
        out: dict[str, str] = {}
        for kind, core in self.secrets.items():
            for line in core.split("\n"):
                for i in range(len(line) - NEEDLE + 1):
                    out[line[i : i + NEEDLE]] = kind
        return out


_RUN = re.compile(r"[A-Za-z0-9+/_-]{" + str(NEEDLE) + ",}")


def leaks(text: str, needles: dict[str, str]) -> list[str]:
    """Kinds of planted secrets any piece of which occurs in ``text`` (pieces are made of
    characters the cores use, so only runs of those need looking at)."""
    found: set[str] = set()
    for m in _RUN.finditer(text):
        run = m.group()
        for i in range(len(run) - NEEDLE + 1):
            kind = needles.get(run[i : i + NEEDLE])
            if kind is not None:
                found.add(kind)
    return sorted(found)


def make_project(root: Path, seed: int = 8) -> Planted:
    rnd = random.Random(seed)

    def core(n: int, alphabet: str = ALNUM) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(n))

    p = Planted(root)

    def plant(kind: str, value: str) -> str:
        p.secrets[kind] = value
        return value

    upper = string.ascii_uppercase + string.digits
    b64 = ALNUM + "+/"
    aws_id = "AK" + "IA" + plant("aws_access_key_id", core(16, upper))
    aws_secret = plant("aws_secret_access_key", core(40, b64))
    ghp = "gh" + "p_" + plant("github_classic", core(36))
    gho = "gh" + "o_" + plant("github_oauth", core(36))
    gh_pat = "github" + "_pat_" + plant("github_fine_grained", core(22) + "_" + core(59))
    glpat = "gl" + "pat-" + plant("gitlab", core(20))
    slack_bot = "xo" + "xb-" + plant("slack_bot", core(12, string.digits) + "-" + core(24))
    slack_user = "xo" + "xp-" + plant("slack_user", core(12, string.digits) + "-" + core(32))
    slack_hook = (
        "https://hooks." + "slack.com/services/" + plant("slack_webhook", "T" + core(10, upper) + "/B" + core(10, upper) + "/" + core(24))
    )  # fmt: skip
    stripe = "sk" + "_live_" + plant("stripe", core(24))
    google = "AI" + "za" + plant("google", core(35))
    openai = "sk-" + "proj-" + plant("openai", core(48))
    anthropic = "sk-" + "ant-" + plant("anthropic", "api03-" + core(40))
    hf = "hf" + "_" + plant("huggingface", core(34))
    npm = "npm" + "_" + plant("npm", core(36))
    header = (
        base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        .decode()
        .rstrip("=")
    )
    payload = (
        base64.urlsafe_b64encode(json.dumps({"sub": core(16), "admin": True}).encode())
        .decode()
        .rstrip("=")
    )
    signature = plant("jwt_signature", core(43, ALNUM + "_-"))
    p.secrets["jwt_payload"] = payload[4:]
    jwt = f"{header}.{payload}.{signature}"
    db_pass = plant("url_password", core(20))
    db_url = f"postgres://admin:{db_pass}@db.internal:5432/app"
    pw_quoted = plant("password_quoted", core(18))
    api_key_quoted = plant("api_key_quoted", core(32))
    secret_unquoted = plant("secret_unquoted", core(30))
    token_single = plant("token_single", core(26))

    def pem(kind: str, label: str, lines: int) -> str:
        body = "\n".join(core(64, b64) for _ in range(lines))
        plant(kind, body)
        return (
            f"-----BEGIN {label}"
            + " PRIVATE KEY-----\n"
            + body
            + f"\n-----END {label}"
            + " PRIVATE KEY-----\n"
        )

    # 8192-bit size: longer than the secret search margin, so only finding its BEGIN helps.
    rsa = pem("rsa_key", "RSA", 100)
    openssh = pem("openssh_key", "OPENSSH", 6)
    ec = pem("ec_key", "EC", 3)
    pkcs8 = (
        pem("pkcs8_key", "", 16)
        .replace("BEGIN  PRIVATE", "BEGIN PRIVATE")
        .replace("END  PRIVATE", "END PRIVATE")
    )

    files: dict[str, str] = {}
    # Files that must never be read at all.
    files[".env"] = (
        f"AWS_ACCESS_KEY_ID={aws_id}\nAWS_SECRET_ACCESS_KEY={aws_secret}\nDATABASE_URL={db_url}\n"
    )
    files[".env.local"] = f"GITHUB_TOKEN={ghp}\nSTRIPE_KEY={stripe}\n"
    files[".env.production"] = f"OPENAI_API_KEY={openai}\nSLACK_BOT_TOKEN={slack_bot}\n"
    files["config/.env.test"] = f"API_TOKEN={api_key_quoted}\n"
    files["server.pem"] = rsa
    files["certs/tls.key"] = ec
    files["id_rsa"] = rsa
    files["deploy/id_ed25519"] = openssh
    files[".netrc"] = f"machine api.example.com login bot password {pw_quoted}\n"
    files["credentials.json"] = json.dumps(
        {"client_secret": api_key_quoted, "refresh_token": glpat}, indent=2
    )
    files[".aws/credentials"] = (
        f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n"
    )
    files["secrets/prod.yaml"] = f"slack: {slack_hook}\nhf: {hf}\n"
    files[".npmrc"] = f"//registry.npmjs.org/:_authToken={npm}\n"
    files[".git-credentials"] = f"https://bot:{ghp}@github.com\n"
    # Gitignored files (not secrets by name): never in the repository context, and when one
    # is the document being edited its secrets are redacted.
    files[".gitignore"] = "local_settings.py\nbuild/\n*.log\n"
    files["local_settings.py"] = (
        f'DEBUG = True\nSECRET_KEY = "{secret_unquoted}"\nDB = "{db_url}"\nSLACK = "{slack_user}"\n'
    )
    files["build/out.js"] = f'const key = "{google}";\nconst hook = "{slack_hook}";\n'
    files["run.log"] = f"Authorization: Bearer {jwt}\nusing token {gho}\n"
    # Ordinary source files with secrets inside, next to real code.
    files["app/config.py"] = (
        "import os\n\n\n"
        "class Config:\n"
        f'    AWS_ACCESS_KEY_ID = "{aws_id}"\n'
        f'    aws_secret_access_key = "{aws_secret}"\n'
        f'    password: str = "{pw_quoted}"\n'
        "    DEBUG = False\n\n\n"
        f'DATABASE_URL = os.environ.get("DATABASE_URL", "{db_url}")\n'
        f"GITHUB = {{'token': '{ghp}', 'fine': '{gh_pat}'}}  # for the release bot\n"
        "def connect(url=DATABASE_URL):\n"
        "    return url\n"
    )
    files["app/client.js"] = (
        "const fetch = require('node-fetch');\n\n"
        f"const SLACK_TOKEN = '{slack_bot}';\n"
        f"const headers = {{ Authorization: `Bearer {jwt}` }};\n"
        f'export const api_key = "{api_key_quoted}";\n'
        f"async function post(msg) {{ return fetch('{slack_hook}', {{ method: 'POST', body: msg }}); }}\n"
        f"const openai = new OpenAI({{ apiKey: '{openai}', other: '{anthropic}' }});\n"
    )
    files["scripts/deploy.sh"] = (
        "#!/bin/sh\nset -e\n"
        f"export GITLAB_TOKEN={glpat}\n"
        f"export HF_TOKEN={hf}\n"
        f"curl -H 'Authorization: token {gho}' https://api.github.com/user\n"
        f'psql "{db_url}" -c "select 1"\n'
        f"secret={secret_unquoted}\n"
        f"npm config set //registry.npmjs.org/:_authToken {npm}\n"
    )
    files["app/keys.py"] = (
        '"""Keys for the integration tests."""\n\n'
        f'SIGNING_KEY = """{rsa}"""\n\n'
        f"SSH_KEY = '''\n{openssh}'''\n\n"
        f"EC_KEY = {ec!r}\n"
        f'TOKEN = "{token_single}"\n'
        "def load():\n    return SIGNING_KEY\n"
    )
    files["app/settings.yaml"] = (
        "service:\n  name: shop\n"
        f"  stripe_secret_key: {stripe}\n"
        f"  google_api_key: {google}\n"
        f'  token: "{token_single}"\n'
        f"  password: {pw_quoted}\n"
    )
    files["README.md"] = (
        "# Shop\n\nCall the API:\n\n"
        f"    curl -H 'Authorization: Bearer {jwt}' https://shop.example.com/api\n\n"
        f"Mirror: https://deploy:{db_pass}@mirror.example.com/repo.git\n"
    )
    # A file large enough that a small prompt window cuts through its private key and its
    # tokens at many cursor positions.
    filler = "".join(
        f"def handler_{i}(event):\n    return event.get('id_{i}')\n\n" for i in range(60)
    )
    files["app/big_module.py"] = (
        filler + f'PRIVATE = """{pkcs8}"""\n' + filler
        + f'AUTH = {{"aws": "{aws_id}", "stripe": "{stripe}", "gh": "{ghp}"}}\n'
        + f"password = '{pw_quoted}'\n" + filler
    )  # fmt: skip
    # A minified line far longer than any prompt window, packed with tokens: a window that
    # starts mid-line starts inside one of them.
    packed = ",".join('"' + "gh" + "p_" + plant(f"packed_{i}", core(36)) + '"' for i in range(300))
    files["app/bundle.min.js"] = "var a=1;var tokens=[" + packed + "];function f(){return a}\n"
    # Assignments whose value sits on the line below the name, every other line (so that a
    # window, which starts on a line numbered by a multiple of 16, starts on a value line).
    files["app/settings.js"] = "// settings\n" + "".join(
        f"const password_{i} =\n  '" + plant(f"multiline_{i}", core(20)) + "';\n"
        for i in range(150)
    )
    files["app/models.py"] = (
        "class Item:\n    def __init__(self, name):\n        self.name = name\n"
    )

    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        p.files.append(path)
    return p
