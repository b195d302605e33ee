"""The publishing rule most push tests use: acme/* to acme/<name>, for alice and the ml-release group."""

RULE = """\
  - match: acme/*
    hub_repo: acme/{name}
    branches: {main: main}
    tags: "v*"
    publishers: [alice, "@ml-release"]
    checks:
      model_card:
        required: [license]
        licenses: [apache-2.0, mit]
      forbid: ["*.env", "id_rsa*"]
"""
GROUPS = "groups:\n  ml-release: [bob]\n"
CARD = "---\nlicense: apache-2.0\n---\n# bert-tiny\n"
