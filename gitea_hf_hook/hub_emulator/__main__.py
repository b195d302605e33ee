"""``python -m gitea_hf_hook.hub_emulator``: run the Hub emulator until SIGTERM/SIGINT.

Prints exactly one line, ``hub-emulator listening on http://HOST:PORT``, once it accepts connections.
"""

from __future__ import annotations

import argparse
import sys

from .server import MiB, serve


def _size(text: str) -> int:
    """Byte count with an optional K/M/G suffix (powers of 1024)."""
    units = {"k": 1024, "m": MiB, "g": 1024 * MiB}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = units.get(text[-1:], 1)
    value = int(text[:-1] if text[-1:] in units else text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be positive")
    return value * factor


def _read_token_file(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m gitea_hf_hook.hub_emulator",
                                     description="Local emulator of the Hugging Face Hub API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--data", required=True, help="data directory; created if missing, kept across restarts")
    parser.add_argument("--token", action="append", default=[], metavar="[USER=]TOKEN[:read]",
                        help="accepted token (repeatable); a bare token belongs to user 'emulator'")
    parser.add_argument("--token-file", help="file with one token specification a line (keeps tokens off argv)")
    parser.add_argument("--org", action="append", default=[], help="organisation every user belongs to")
    parser.add_argument("--page-size", type=int, default=1000, help="entries per tree/commit page (default 1000)")
    parser.add_argument("--multipart-threshold", type=_size, default=64 * MiB,
                        help="LFS objects larger than this use multipart transfer (default 64M)")
    parser.add_argument("--chunk-size", type=_size, default=16 * MiB, help="multipart part size (default 16M)")
    parser.add_argument("--verbose", action="store_true", help="access log on stderr (tokens redacted)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve; returns the exit status."""
    args = build_parser().parse_args(argv)
    tokens = list(args.token)
    if args.token_file:
        tokens += _read_token_file(args.token_file)
    if not tokens:
        print("hub-emulator: at least one --token or --token-file is required", file=sys.stderr)
        return 2
    try:
        serve(args.host, args.port, args.data, tokens, page_size=args.page_size,
              multipart_threshold=args.multipart_threshold, chunk_size=args.chunk_size, orgs=args.org,
              verbose=args.verbose)
    except (ValueError, OSError) as exc:
        # ValueError messages here never contain a token (see auth.parse_token_spec).
        print(f"hub-emulator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
