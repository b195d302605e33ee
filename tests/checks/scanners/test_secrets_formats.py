"""Each format we claim, against the shapes of the true and false positives that public secret scanners test
their own rules with: the contexts tokens leak in, and the look-alikes a scanner must leave alone.

Tokens are built at run time from a prefix and a seeded random body, never written whole in this file.
"""

from __future__ import annotations

import random
import string

import pytest

from gitea_hf_hook.checks.scanners import Finding
from gitea_hf_hook.checks.scanners.secrets import scan_secrets

_rng = random.Random(20261203)
ALNUM = string.ascii_letters + string.digits
LETTERS = string.ascii_letters
UPPER = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"


def rand(alphabet: str, n: int) -> str:
    """A random body; mixed case whenever the alphabet has both, as issued tokens are."""
    both_cases = alphabet.upper() != alphabet and alphabet.lower() != alphabet
    while True:
        text = "".join(_rng.choice(alphabet) for _ in range(n))
        if not both_cases or text.upper() != text and text.lower() != text:
            return text


def digits(n: int) -> str:
    return str(_rng.randrange(1, 10)) + rand(string.digits, n - 1)


def hf(prefix: str = "hf" + "_") -> str:
    return prefix + rand(LETTERS, 34)


def org() -> str:
    return "api" + "_org_" + rand(LETTERS, 34)


def aws(kind: str = "AKIA") -> str:
    return kind + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)


def github(prefix: str) -> str:
    return prefix + "_" + rand(ALNUM, 36)


def slack(kind: str, *parts: str) -> str:
    return "xox" + kind + "-" + "-".join(parts)


def key(label: str, body_lines: int = 3, nl: str = "\n", armor: tuple[str, ...] = ()) -> str:
    dashes = "-" * 5
    lines = [rand(ALNUM + "+/", 64) for _ in range(body_lines)]
    head = [f"{dashes}BEGIN {label}{dashes}", *armor, *([""] if armor else [])]
    return nl.join([*head, *lines, f"{dashes}END {label}{dashes}"])


HF = Finding("looks like a Hugging Face token", "remove it, rewrite the commit, and revoke the token")
AWS = Finding("looks like an AWS access key id", "remove it, rewrite the commit, and deactivate the key in AWS IAM")
GITHUB = Finding("looks like a GitHub token", "remove it, rewrite the commit, and revoke the token")
GITLAB = Finding("looks like a GitLab token", "remove it, rewrite the commit, and revoke the token")
SLACK = Finding("looks like a Slack token", "remove it, rewrite the commit, and revoke the token")
WEBHOOK = Finding("looks like a Slack webhook URL", "remove it, rewrite the commit, and regenerate the webhook")
KEY = Finding("looks like a private key", "remove it, rewrite the commit, and replace the key pair")

HOOK = "hooks.slack" + ".com"

# (what leaked, in the context it leaked in) -> the finding, on line 1
TRUE_POSITIVES: list[tuple[str, Finding]] = [
    # Hugging Face: command lines, headers, environment, code and notebooks.
    (f"hf auth login --token {hf()}", HF),
    (f'-H "Authorization: Bearer {hf()}"', HF),
    (f"DEV=1 HF_TOKEN={hf()} python app.py", HF),
    (f"use_auth_token='{hf()}')", HF),
    (f'CI_HUB_USER_TOKEN = "{hf()}"', HF),
    (f'    parser.add_argument("--hf_token", type=str, default=\'{hf()}\', help="token")', HF),
    (f'        "    hf_token = \\"{hf()}\\"\\n",', HF),  # a notebook cell, JSON-escaped
    (f"hf_token = \"{hf()}\"  # Intentionally revealing this key for testing purposes", HF),
    (f"`{org()}`", HF),
    (f"\\'{org()}'\\", HF),
    (f'\\"{org()}\\"', HF),
    (f",{org()},", HF),
    (f"({org()})", HF),
    (f"<foo>{org()}</foo>", HF),
    (f"os.environ['HUGGINGFACEHUB_API_TOKEN'] = '{org()}'", HF),
    (f"token: {'hf' + '_' + rand(ALNUM, 34)}", HF),  # digits in the body too
    # AWS access key ids of each kind.
    (f"aws_access_key_id = {aws()}", AWS),
    (f'"AccessKeyId": "{aws("ASIA")}"', AWS),
    (f"key={aws('ABIA')}", AWS),
    (f"key={aws('ACCA')}", AWS),
    (f"key={aws('A3T' + 'X')}", AWS),
    # GitHub.
    *[(f"GITHUB_TOKEN={github(prefix)}", GITHUB) for prefix in ("ghp", "gho", "ghu", "ghs", "ghr")],
    (f"token = 'github_pat_{rand(ALNUM, 22)}_{rand(ALNUM, 59)}'", GITHUB),
    # GitLab, the classic token and the routable one.
    (f"PRIVATE-TOKEN: glpat-{rand(ALNUM, 20)}", GITLAB),
    (f"PRIVATE-TOKEN: glpat-{rand(ALNUM, 20)}.", GITLAB),
    (f"export GITLAB_TOKEN=glpat-{rand(ALNUM + '_-', 27)}.{rand(string.ascii_lowercase + string.digits, 9)}", GITLAB),
    # Slack: bot, user, app-level, configuration and legacy tokens.
    (f'"bot_token": "{slack("b", digits(12), digits(13), rand(ALNUM, 24))}"', SLACK),
    (f'"bot_token": "{slack("b", digits(13), digits(13), rand(ALNUM, 24))}"', SLACK),
    (f'"bot_token": "{slack("b", digits(12), digits(13), rand(ALNUM, 27))}"', SLACK),
    (f'"bot_token": "{slack("b", digits(12), rand(ALNUM, 24))}"', SLACK),  # legacy
    (f'"bot_token": "{slack("b", digits(11), rand(ALNUM, 24))}"', SLACK),
    (f'"bot_token": "{slack("b", digits(12), rand(ALNUM, 19))}"', SLACK),
    (f'"bot_token": "{slack("b", digits(8), "slacktoken" + rand(ALNUM, 9))}"', SLACK),
    (f'"user_token": "{slack("p", digits(11), digits(10), digits(11), rand(HEX, 32))}"', SLACK),
    (f'"user_token": "{slack("p", digits(12), digits(12), digits(12), rand(HEX, 32))}"', SLACK),
    (f'"user_token": "{slack("p", digits(13), digits(13), digits(13), rand(HEX, 32))}"', SLACK),
    (f'"url_private": "https://files.example/image.png?t={slack("e", digits(13), digits(13), digits(13), rand(HEX, 32))}"',
     SLACK),
    (f'"token": "xapp-1-A{rand(UPPER, 10)}-{digits(13)}-{rand(HEX, 64)}"', SLACK),
    (f'"access_token": "xoxe.xoxp-1-{rand(ALNUM, 163)}"', SLACK),
    (f'"access_token": "xoxe.xoxb-1-{rand(ALNUM, 165)}"', SLACK),
    (f'"refresh_token": "xoxe-1-{rand(ALNUM, 146)}"', SLACK),
    (f'"access_token": "{slack("a", "2", digits(9), digits(11), digits(13), rand(HEX, 18))}"', SLACK),
    (f'"access_token": "{slack("s", digits(10), digits(10), digits(10), rand(HEX, 10))}"', SLACK),
    (f'"access_token": "{slack("s", digits(12), digits(12), digits(12), rand(HEX, 64))}"', SLACK),
    (f'"access_token": "{slack("o", digits(6), digits(6), digits(6), rand(HEX, 18))}"', SLACK),
    # Slack webhooks with any scheme, or none, and the host in either case.
    (f"{HOOK}/services/T{rand(UPPER, 8)}/B{rand(UPPER, 8)}/{rand(ALNUM, 24)}", WEBHOOK),
    (f"http://{HOOK}/services/T{rand(UPPER, 8)}/B{rand(UPPER, 7)}/{rand(ALNUM, 24)}", WEBHOOK),
    (f"https://{HOOK}/services/T{rand(UPPER, 8)}/B{rand(UPPER, 8)}/{rand(ALNUM, 24)}", WEBHOOK),
    (f"HTTPS://{HOOK}/services/T{rand(UPPER, 10)}/B{rand(UPPER, 10)}/{rand(ALNUM, 24)}", WEBHOOK),
    (f"Http://{HOOK.upper()}/services/T{rand(UPPER, 8)}/B{rand(UPPER, 8)}/{rand(ALNUM, 24)}", WEBHOOK),
    (f"url: '{HOOK}/workflows/T{rand(UPPER, 10)}/A{rand(UPPER, 10)}/{digits(18)}/{rand(ALNUM, 24)}'", WEBHOOK),
    (f"url: 'http://{HOOK}/workflows/T{rand(UPPER, 8)}/A{rand(UPPER, 10)}/{digits(18)}/{rand(ALNUM, 24)}'", WEBHOOK),
    (f"url: 'https://{HOOK}/triggers/T{rand(UPPER, 9)}/{digits(13)}/{rand(HEX, 32)}'", WEBHOOK),
    # Private keys, PEM and OpenPGP armor, raw and inside JSON.
    *[(key(f"{kind}PRIVATE KEY"), KEY) for kind in ("", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ")],
    (key("RSA PRIVATE KEY", nl="\r\n"), KEY),
    (key("PGP PRIVATE KEY BLOCK", armor=("Version: Keybase OpenPGP v1.0.0", "Comment: https://keybase.example")), KEY),
    (key("RSA PRIVATE KEY", armor=("Proc-Type: 4,ENCRYPTED", f"DEK-Info: AES-128-CBC,{rand(UPPER, 32)}")), KEY),
    ('{"private_key": "' + key("PRIVATE KEY", nl="\\n") + '\\n"}', KEY),
    (f"{'-' * 5}BEGIN OPENSSH PRIVATE KEY{'-' * 5} {rand(ALNUM + '+/', 70)}", KEY),  # one line
]

# Look-alikes: identifiers, placeholders, documentation and data that share a prefix with a token.
FALSE_POSITIVES: list[str] = [
    # "hf_" and "api_org_" inside identifiers, and bodies of the wrong length (split, so that no source line is
    # token-shaped).
    "- (id)h" "f_requiredCharacteristicTypesForDisplayMetadata;",
    'div[data-widget="desktop-rh' 'f_SponsoredProductsRemoteRHFSearchEXPSubsK2ClickPagination"]',
    "    _kHMSymptomh" "f_generatedByHomeAppForDebuggingPurposesKey,",
    "#define OSCHF_DebugGetExpectedAverageCrystalAmplitude NOROM_OSCHF_DebugGetExpectedAverageCrystalAmplitude",
    "  M_UINT(ServingCellPriority_t, H_PRIO, 2, &h" "f_servingcellpriorityparametersdescription_h_prio),",
    "bb_eeeeegfgffhiiiiiiiiiiihiiiiicgafh" "f_eefghihhiiiifhifhhdhifhiiiihifdgdhggf",  # sequencer quality scores
    "subdirs = glob.glob('HF_CAASIMULIAComputeServicesBuildTime.HF*.Linux64')",
    'os.environ.get("HF_AUTH_TOKEN", "' + "hf_" + "x" * 34 + '"),',
    "HUGGINGFACE_API_TOKEN=" + "hf_" + "x" * 40 + ",",
    "hf_" + rand(LETTERS, 44),  # 47 characters: an identifier, not a token
    "hf_" + rand(LETTERS, 33),  # one short
    'public static final String API_ORG_EXIST = "APIOrganizationExist";',
    "const api_org_controller = require('../../controllers/api/index').organizations;",
    "    def _api_org_96726c78_4ae3_402f_b08b_7a78c6903d2a(self, method, url, body, headers):",
    "You should see a token hf_xxxxx (old tokens are api_XXXXXXXX or api_org_" + "X" * 34 + ").",
    # AWS's documented sample, placeholders, lengths.
    "aws_access_key_id = AKIA" + "IOSFODNN7" + "EXAMPLE",
    "aws_access_key_id = AKIA" + "X" * 16,
    "AKIA" + rand(UPPER, 17),
    "xAKIA" + rand(UPPER, 16),
    # GitHub bodies of the wrong length or case.
    "ghp_" + rand(ALNUM, 35),
    "ghp_" + rand(ALNUM, 37),
    "ghp_" + rand(string.ascii_uppercase + string.digits, 36),
    "github_pat_" + rand(ALNUM, 81),
    # GitLab placeholders.
    "glpat-" + "XXXXXXXXXXX-XXXXXXXX",
    "glpat-" + "xxxxxxxx-xxxxxxxxxxxxxxxxxx.xxxxxxxxx",
    "glpat-" + rand(ALNUM, 19),
    # Slack look-alikes: the ids are not numbers, too short, or the secret is masked.
    "xoxb-xxxxxxxxx-xxxxxxxxxx-xxxxxxxxxxxx",
    "xoxb-xxx",
    "xoxb-12345-abcd234",
    "xoxb-xoxb-my-bot-token",
    "xoxb-xxxxxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx",
    "xoxb-Slack_BOT_TOKEN",
    "xoxb-abcdef-abcdef",
    '"token1": "xoxp-1234567890"',
    '"token2": "xoxp-XXXXXXXXXX-XXXXXXXXXX-XXXXXXXXXXX-' + "X" * 32 + '"',
    '"token3": "xoxp-1234-1234-1234-' + rand(HEX, 32) + '"',
    '"token4": "xoxp-' + "-".join(digits(12) for _ in range(3)) + "-" + "#" * 20 + '"',
    "xoxe.xoxp-1-SlackAppConfigurationAccessTokenHere",
    "xoxe.xoxp-1-RANDOMSTRINGHERE",
    "xoxe.xoxp-1-initial",
    "xoxe-1-xxx",
    "XOxE-RROAmw, Home and Garden, 5:24, 20120323",
    "xoxa-faketoken",
    "xoxa-access-token-string",
    "XOXa-nx991k",
    "https://git.example/xoxa-nyc/xoxa-nyc.example.io/blob/master/README.md",
    "https://images.example/3/35/2018-250-xoxo-indieweb-1.jpg",
    "https://images.example/s640/EXO-XOXO-teaser-exo-k-34521098-720-516.jpg",
    "https://docs.example/document/d/1W7KCxOxP-1Fy5EyF2lbJGE2WuKmu5v0suYqoHas1jRM",
    # Webhook documentation.
    f"https://{HOOK}/services/T00000000/B00000000/" + "X" * 24,
    f"https://{HOOK}/services/YOUR/WEBHOOK/URL",
    f"the URL looks like https://{HOOK}/services/...",
    # Key material that is not a private key, or a header without one.
    'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):',
    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC...\n-----END PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\n" + "A" * 64 + "\n-----END PRIVATE KEY-----",
    key("PUBLIC KEY"),
    key("CERTIFICATE"),
]


@pytest.mark.parametrize("text, expected", TRUE_POSITIVES, ids=[f"tp{i}" for i in range(len(TRUE_POSITIVES))])
def test_every_claimed_format_is_found_in_the_context_it_leaks_in(text: str, expected: Finding) -> None:
    assert scan_secrets(text.encode()) == [Finding(expected.problem, expected.hint, 1)]


@pytest.mark.parametrize("text", FALSE_POSITIVES, ids=[f"fp{i}" for i in range(len(FALSE_POSITIVES))])
def test_look_alikes_are_left_alone(text: str) -> None:
    assert scan_secrets(text.encode()) == []


def test_a_hugging_face_token_has_exactly_34_characters_after_its_prefix() -> None:
    body = rand(LETTERS, 40)
    found = {n: scan_secrets(("hf" + "_" + body[:n] + " ").encode()) for n in range(30, 40)}
    assert {n for n, findings in found.items() if findings} == {34}
