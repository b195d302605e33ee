"""Secret scanning: each test pins the exact finding a pusher would see.

No token-shaped literal appears in this file (secret scanners, including ours, would rightly flag it): every
token is assembled at run time from a prefix and a synthetic body.
"""

from __future__ import annotations

import base64

import pytest

from gitea_hf_hook.checks.scanners import Finding
from gitea_hf_hook.checks.scanners.secrets import scan_secrets

REVOKE = "remove it, rewrite the commit, and revoke the token"
HF = Finding("looks like a Hugging Face token", REVOKE)
AWS = Finding("looks like an AWS access key id", "remove it, rewrite the commit, and deactivate the key in AWS IAM")
GITHUB = Finding("looks like a GitHub token", REVOKE)
SLACK = Finding("looks like a Slack token", REVOKE)
WEBHOOK = Finding("looks like a Slack webhook URL", "remove it, rewrite the commit, and regenerate the webhook")
KEY = Finding("looks like a private key", "remove it, rewrite the commit, and replace the key pair")


def body(length: int) -> str:
    """A mixed-case alphanumeric string shaped like a random token body."""
    return ("aB3xY9Qz7KmN2pL5" * 10)[:length]


def pem_body() -> str:
    return base64.b64encode(bytes(range(7, 250))).decode()


def pem(kind: str) -> str:
    dashes = "-" * 5
    lines = [pem_body()[i : i + 64] for i in range(0, 192, 64)]
    return "\n".join([f"{dashes}BEGIN {kind}PRIVATE KEY{dashes}", *lines, f"{dashes}END {kind}PRIVATE KEY{dashes}"])


def slack_webhook() -> str:
    return "https://hooks.slack.com/services/" + "T0AB12CD3" + "/" + "B0XY98ZW7" + "/" + body(24)


SECRETS: dict[str, tuple[str, Finding]] = {
    "huggingface": ("hf_" + body(34), HF),
    "huggingface org": ("api_org_" + body(34), HF),
    "aws": ("AKIA" + "Q3ZT7WJ2LX5PN8RV", AWS),
    "aws session": ("ASIA" + "Q3ZT7WJ2LX5PN8RV", AWS),
    "github classic": ("ghp_" + body(36), GITHUB),
    "github oauth": ("gho_" + body(36), GITHUB),
    "github app": ("ghs_" + body(36), GITHUB),
    "github fine-grained": ("github_pat_" + body(22) + "_" + body(59), GITHUB),
    "gitlab": ("glpat-" + body(20), Finding("looks like a GitLab token", REVOKE)),
    "slack bot": ("xoxb-" + "2345678901-" + "3456789012345-" + body(24), SLACK),
    "slack user": ("xoxp-" + "-".join(["2345678901", "34567890123", "456789012345"]) + "-" + body(32), SLACK),
    "slack webhook": (slack_webhook(), WEBHOOK),
    "rsa key": (pem("RSA "), KEY),
    "pkcs8 key": (pem(""), KEY),
    "openssh key": (pem("OPENSSH "), KEY),
    "ec key": (pem("EC "), KEY),
    "dsa key": (pem("DSA "), KEY),
    "encrypted key": (pem("ENCRYPTED "), KEY),
}


def at_line(finding: Finding, line: int | None) -> Finding:
    return Finding(finding.problem, finding.hint, line)


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_kind_is_found_on_its_line(name: str) -> None:
    secret, expected = SECRETS[name]
    data = f"# config\n\nvalue = 1\n  token = '{secret}'\nmore = 2\n".encode()
    assert scan_secrets(data) == [at_line(expected, 4)]


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secret_never_appears_in_the_finding(name: str) -> None:
    secret, _ = SECRETS[name]
    (finding,) = scan_secrets(secret.encode())
    shown = finding.problem + " " + finding.hint
    # No 8-character slice of the secret, let alone the whole thing, may leak into pusher-facing output.
    assert not any(secret[i : i + 8] in shown for i in range(len(secret) - 7))


def test_pgp_private_key_block_with_armor_headers() -> None:
    armored = ["Version: GnuPG v2", "Comment: test", "", pem_body()[:64], "=abcd"]
    data = "\n".join(["-----BEGIN PGP PRIVATE KEY BLOCK-----", *armored, "-----END PGP PRIVATE KEY BLOCK-----"])
    assert scan_secrets(data.encode()) == [at_line(KEY, 1)]


def test_encrypted_pem_with_proc_type_headers() -> None:
    headers = ["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC,0A1B2C3D4E5F60718293A4B5C6D7E8F9"]
    lines = ["-----BEGIN RSA PRIVATE KEY-----", *headers, "", pem_body()[:64]]
    assert scan_secrets(("x = 1\r\n" + "\r\n".join(lines)).encode()) == [at_line(KEY, 2)]


def test_private_key_inside_json_with_escaped_newlines() -> None:
    key = pem("").replace("\n", "\\n")
    data = '{\n  "type": "service_account",\n  "private_key": "' + key + '\\n",\n  "client_email": "a@b.c"\n}\n'
    assert scan_secrets(data.encode()) == [at_line(KEY, 3)]


def test_private_key_header_without_a_body_is_code_not_a_key() -> None:
    data = b'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):\n    parse(line)\n'
    assert scan_secrets(data) == []


def test_several_secrets_on_separate_and_shared_lines() -> None:
    hf, aws = SECRETS["huggingface"][0], SECRETS["aws"][0]
    data = f"a = '{hf}'\n\n\nb = '{aws}'; c = '{hf}'\n".encode()
    assert scan_secrets(data) == [at_line(HF, 1), at_line(AWS, 4), at_line(HF, 4)]


def test_non_utf8_bytes_around_a_secret() -> None:
    data = b"\xff\xfe\x80garbage\n\xc3\x28\n" + b"\x9f\x92" + SECRETS["huggingface"][0].encode() + b"\xe9\xe9\n"
    assert scan_secrets(data) == [at_line(HF, 3)]


def test_binary_content_around_a_secret_is_still_scanned() -> None:
    data = bytes(range(256)) * 4 + b"\n" + SECRETS["github classic"][0].encode() + b"\x00\x01"
    assert scan_secrets(data) == [at_line(GITHUB, 6)]


@pytest.mark.parametrize(
    "placeholder",
    [
        "hf_" + "x" * 34,
        "hf_" + "X" * 40,
        "api_org_" + "0" * 34,
        "AKIA" + "X" * 16,
        "AKIA" + "IOSFODNN7" + "EXAMPLE",  # AWS's documented sample key id
        "ghp_" + "x" * 36,
        "glpat-" + "xxxxxxxxxxxxxxxxxxxx",
        "https://hooks.slack.com/services/" + "T00000000/B00000000/" + "X" * 24,  # Slack's documented example
        "xoxb-" + "0000000000-" + "0000000000-" + "x" * 24,
        "xoxb-your-bot-token-goes-here-please",
    ],
)
def test_placeholders_are_not_reported(placeholder: str) -> None:
    assert scan_secrets(f"TOKEN = '{placeholder}'\n".encode()) == []


@pytest.mark.parametrize(
    "text",
    [
        "hf_" + "loadpretrainedweightsfromcheckpointfile",  # long lowercase identifier, not a random token
        "ghp_" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",  # single-case body: not base62 random
        "xAKIA" + "Q3ZT7WJ2LX5PN8RV",  # not at a word start
        "AKIA" + "Q3ZT7WJ2LX5PN8RVW",  # 17 characters: longer than an access key id
        "myhf_" + body(34),
        "-----BEGIN PUBLIC KEY-----\n" + pem_body()[:64],
    ],
)
def test_near_misses_are_not_reported(text: str) -> None:
    assert scan_secrets(text.encode()) == []


def test_a_token_inside_a_near_miss_is_still_found() -> None:
    # "Xxoxa-1-..." is not a Slack token (it continues a word), but the access key id it runs into is a key.
    aws = SECRETS["aws"][0]
    assert scan_secrets(f"key: Xxoxa-1-{aws}\n".encode()) == [at_line(AWS, 1)]
    assert scan_secrets(f"ids: Xglpat-{aws}\n".encode()) == [at_line(AWS, 1)]


def test_findings_are_capped_and_the_rest_counted() -> None:
    data = "".join(f"k{i} = {SECRETS['gitlab'][0]}\n" for i in range(27)).encode()
    findings = scan_secrets(data)
    assert findings[:20] == [at_line(SECRETS["gitlab"][1], i + 1) for i in range(20)]
    assert findings[20:] == [
        Finding("7 more possible secrets not listed", "remove them all, rewrite the commits, and revoke every credential"),
    ]


def test_clean_text_has_no_findings() -> None:
    code = b"import torch\nmodel = AutoModel.from_pretrained('gpt2', token=os.environ['HF_TOKEN'])\n"
    assert scan_secrets(code) == []


def test_a_secret_in_the_middle_of_ten_megabytes_is_found_on_its_line() -> None:
    # How fast this is, is measured by bench/secrets_scan.py; here, only what the pusher is told.
    chunk = (
        b"def forward(self, hidden_states, attention_mask=None):\n"
        b"    # Apply the graph attention; high throughput, right? Ask the gh CLI.\n"
        b"    x = self.dropout(hidden_states) + 0x1F  -- AKIA header ASIA glpat xox hf_ api_org_\n"
    )
    data = bytearray(chunk * (10_000_000 // len(chunk)))
    secret = b" " + SECRETS["huggingface"][0].encode() + b" "
    data[5_000_000 : 5_000_000 + len(secret)] = secret
    expected_line = bytes(data[:5_000_000]).count(b"\n") + 1
    assert scan_secrets(bytes(data)) == [at_line(HF, expected_line)]
